//! Property tests for the allocator.
