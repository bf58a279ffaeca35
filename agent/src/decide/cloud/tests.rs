//! Tests of the rendered templates.
