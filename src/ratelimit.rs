//! Rate limits shared by all sending workers.
