//! Diagnostics as data; rendering (with a source excerpt) happens in one place: [`Diagnostic::render`].

use crate::span::Span;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Option<Span>,
    pub message: String,
    /// How to fix it ("did you mean `script`?").
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Option<Span>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            span,
            message: message.into(),
            help: None,
        }
    }
    pub fn warning(span: Option<Span>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            span,
            message: message.into(),
            help: None,
        }
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Like `with_help`, for an optional help (a did-you-mean that may have found nothing).
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render as a compact rustc-like excerpt; `source` is the text of `self.span.file`:
    ///
    /// ```text
    /// .gitlab-ci.yml:3:3: error: unknown keyword `scirpt` in job `build`
    ///   |
    /// 3 |   scirpt: make
    ///   |   ^^^^^^
    ///   = help: did you mean `script`?
    /// ```
    ///
    /// Without a span (or when the span is outside `source`) only the first and help lines are
    /// printed.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        if let Some(span) = &self.span {
            out.push_str(&format!("{span}: "));
        }
        out.push_str(&format!("{}: {}", self.severity.as_str(), self.message));
        let line = self
            .span
            .as_ref()
            .and_then(|s| Some((s, source.lines().nth(s.line.checked_sub(1)?)?)));
        let gutter = line.map_or(0, |(s, _)| s.line.to_string().len());
        if let Some((span, text)) = line {
            let pad = " ".repeat(gutter);
            // Keep tabs in the caret prefix so the caret lines up with the text above it.
            let prefix: String = text
                .chars()
                .take(span.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let rest = text.get(span.offset.saturating_sub(line_start(source, span.offset))..);
            let width = match rest {
                Some(rest) if span.len > 0 => rest
                    .char_indices()
                    .take_while(|(i, _)| *i < span.len)
                    .count()
                    .max(1),
                _ => 1,
            };
            out.push_str(&format!(
                "\n{pad} |\n{} | {text}\n{pad} | {prefix}{}",
                span.line,
                "^".repeat(width)
            ));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("\n{} = help: {help}", " ".repeat(gutter)));
        }
        out
    }
}

/// Byte offset of the start of the line holding `offset`.
fn line_start(source: &str, offset: usize) -> usize {
    source
        .get(..offset)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1)
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = self.severity.as_str();
        if let Some(span) = &self.span {
            write!(f, "{span}: ")?;
        }
        write!(f, "{level}: {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// One or more diagnostics, at least one of them an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Render every diagnostic with [`Diagnostic::render`], looking sources up by file name.
    pub fn render(&self, source_of: &dyn Fn(&str) -> Option<String>) -> String {
        let rendered: Vec<String> = self
            .0
            .iter()
            .map(|d| {
                let source = d.span.as_ref().and_then(|s| source_of(&s.file));
                d.render(source.as_deref().unwrap_or(""))
            })
            .collect();
        rendered.join("\n\n")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The diagnostics collected while loading; everything is reported, not just the first problem.
#[derive(Debug, Default)]
pub(crate) struct Diags(pub Vec<Diagnostic>);

impl Diags {
    /// Push an error at `span`; returns it so a help can be attached.
    pub fn error(&mut self, span: &Span, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::error(Some(span.clone()), message))
    }
    pub fn warning(&mut self, span: &Span, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::warning(Some(span.clone()), message))
    }
    pub fn push(&mut self, d: Diagnostic) -> &mut Diagnostic {
        let i = self.0.len();
        self.0.push(d);
        &mut self.0[i]
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
}

impl Diagnostic {
    /// Attach a help in place (for use through [`Diags::error`]).
    pub(crate) fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
    pub(crate) fn help_opt(&mut self, help: Option<String>) -> &mut Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }
}
