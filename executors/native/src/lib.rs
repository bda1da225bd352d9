//! `nullspace-native`: builds OCI images without a daemon.
