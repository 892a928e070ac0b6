//! TODO(owner): esr
