//! Envelope encryption with ring.
