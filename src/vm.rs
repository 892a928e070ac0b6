//! TODO(owner): vm
