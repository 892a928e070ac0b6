//! TODO(owner): dt
