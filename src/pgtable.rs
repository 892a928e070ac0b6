//! TODO(owner): pgtable
