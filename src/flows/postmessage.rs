//! Flow B: placeholder
