//! TODO(owner): inject
