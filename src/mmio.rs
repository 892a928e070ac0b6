//! TODO(owner): mmio
