//! The send queue: workers claim batches, results are checkpointed.
