//! TODO(owner): devices
