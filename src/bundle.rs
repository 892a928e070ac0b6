//! TODO(owner): bundle
