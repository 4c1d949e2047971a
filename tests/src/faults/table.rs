//! What each faulted operation came to, and the table the reliability test prints.

use super::{Class, Fault};

/// How one operation under one fault ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it was asked (after retries, if the fault hit it).
    Survived,
    /// It failed with a berth error of this kind (`ErrorKind::as_str`), naming what failed.
    FailedClearly(String),
    /// It was still running when the hang bound passed.
    Hung,
    /// It ended but left or returned something wrong: a tag on an incomplete image, bytes that are not the
    /// registry's, an image reported absent that is there. The text says which.
    Corrupt(String),
}

/// One operation run under one fault.
#[derive(Debug, Clone)]
pub struct Row {
    /// The fault injected.
    pub fault: Fault,
    /// The requests it hit.
    pub class: Class,
    /// How many requests of that class passed before it (1: a pull's layer, after its config).
    pub skip: u32,
    /// The operation berth did (`berth exists`, `containerd push`, ...).
    pub operation: String,
    /// How many requests got the fault (0: the operation never made such a request).
    pub injected: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// The error or corruption, for the notes under the table.
    pub detail: String,
}

impl Row {
    /// The requests hit, as the table names them: `blob GET #2` when the first passed.
    pub fn request(&self) -> String {
        match self.skip {
            0 => self.class.name().to_string(),
            n => format!("{} #{}", self.class.name(), n + 1),
        }
    }
}

/// The outcomes of a reliability run.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds one outcome.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Orders the rows by operation, request class and fault, so runs compare line by line.
    pub fn sort(&mut self) {
        let fault_index = |f: Fault| Fault::ALL.iter().position(|x| *x == f).unwrap_or(0);
        self.rows.sort_by(|a, b| {
            (
                a.operation.as_str(),
                a.class.name(),
                a.skip,
                fault_index(a.fault),
            )
                .cmp(&(
                    b.operation.as_str(),
                    b.class.name(),
                    b.skip,
                    fault_index(b.fault),
                ))
        });
    }

    /// The outcomes so far.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Operations that hung.
    pub fn hung(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Hung))
    }

    /// Operations that left or returned something wrong.
    pub fn corrupt(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Corrupt(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.rows.iter().filter(|r| f(&r.outcome)).count()
    }

    /// The table as Markdown: one line per fault, request class and operation, then totals, then the errors of
    /// the operations that did not survive.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "| fault | request | operation | injected | survived | failed clearly | hung | corrupt |\n\
             |---|---|---|---:|---:|---:|---:|---:|\n",
        );
        let mark = |yes: bool| if yes { "1" } else { "0" };
        for r in &self.rows {
            let failed = match &r.outcome {
                Outcome::FailedClearly(kind) => format!("1 ({kind})"),
                _ => "0".to_string(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.fault.name(),
                r.request(),
                r.operation,
                r.injected,
                mark(r.outcome == Outcome::Survived),
                failed,
                mark(r.outcome == Outcome::Hung),
                mark(matches!(r.outcome, Outcome::Corrupt(_))),
            ));
        }
        let total = |f: &dyn Fn(&Outcome) -> bool| self.count(f);
        out.push_str(&format!(
            "| **all** | | {} operations | {} | {} | {} | {} | {} |\n",
            self.rows.len(),
            self.rows.iter().map(|r| r.injected).sum::<u32>(),
            total(&|o| *o == Outcome::Survived),
            total(&|o| matches!(o, Outcome::FailedClearly(_))),
            self.hung(),
            self.corrupt(),
        ));
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.outcome != Outcome::Survived)
            .map(|r| {
                format!(
                    "- {} / {} / {}: {}",
                    r.fault.name(),
                    r.request(),
                    r.operation,
                    r.detail
                )
            })
            .collect();
        if !notes.is_empty() {
            out.push_str("\nOperations that did not survive:\n");
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out
    }
}
