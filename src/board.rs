//! TODO(owner): board
