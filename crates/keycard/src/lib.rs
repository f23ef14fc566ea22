//! keycard.
