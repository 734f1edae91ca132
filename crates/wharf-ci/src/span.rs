//! Where something is written: file, line, column and byte offset. The one type every layer
//! shares, so it sits at the bottom.

use std::fmt;

/// A place in a source file. `line` and `column` are 1-based; `column` counts characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    /// The path as given to the loader (relative to the project folder when it came from there).
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Byte offset of the start in the file's text.
    pub offset: usize,
    /// Length in bytes (0 when unknown).
    pub len: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
