//! TODO(owner): psci
