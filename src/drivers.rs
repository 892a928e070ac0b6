//! TODO(owner): drivers
