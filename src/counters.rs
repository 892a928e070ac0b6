//! TODO(owner): counters
