//! TODO(owner): mm
