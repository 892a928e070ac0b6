//! TODO(owner): shadow
