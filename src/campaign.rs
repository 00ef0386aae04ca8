//! Campaigns: recipients to jobs.
