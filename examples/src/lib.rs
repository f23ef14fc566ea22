//! keycard examples.
