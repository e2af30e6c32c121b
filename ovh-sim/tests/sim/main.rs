//! Integration tests of ovh-sim (being written).
