//! The diff log: diff records as JSON Lines, one record per line.
//!
//! Writing always goes through [`Redaction`], so a caller cannot store an
//! unredacted record by forgetting a step: it has to say
//! [`Redaction::Disabled`] (the CLI's `--no-redact`).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::DiffLogError;
use crate::lines::NumberedLines;
use crate::record::DiffRecord;
use crate::redact::Redactor;

/// Whether written values are redacted.
#[derive(Debug, Clone)]
pub enum Redaction {
    /// Hash personal data and drop credentials (the default everywhere).
    Keyed(Redactor),
    /// Write values as they are. Only for an explicit `--no-redact`.
    Disabled,
}

impl Redaction {
    /// Applies the redaction to a record (no-op when disabled).
    pub fn apply(&self, record: &mut DiffRecord) {
        if let Redaction::Keyed(redactor) = self {
            redactor.redact_record(record);
        }
    }

    pub fn redactor(&self) -> Option<&Redactor> {
        match self {
            Redaction::Keyed(r) => Some(r),
            Redaction::Disabled => None,
        }
    }
}

/// Appends redacted records to a JSONL sink.
#[derive(Debug)]
pub struct DiffLogWriter<W: Write> {
    out: BufWriter<W>,
    redaction: Redaction,
    path: PathBuf,
    written: u64,
}

impl DiffLogWriter<File> {
    /// Opens `path` for appending (created if missing).
    pub fn append(path: &Path, redaction: Redaction) -> Result<Self, DiffLogError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| DiffLogError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self::new(file, path, redaction))
    }
}

impl<W: Write> DiffLogWriter<W> {
    /// Wraps any writer; `path` is only used in error messages.
    pub fn new(out: W, path: &Path, redaction: Redaction) -> Self {
        Self {
            out: BufWriter::new(out),
            redaction,
            path: path.to_owned(),
            written: 0,
        }
    }

    /// Redacts and writes one record as one line.
    pub fn write(&mut self, mut record: DiffRecord) -> Result<(), DiffLogError> {
        self.redaction.apply(&mut record);
        serde_json::to_writer(&mut self.out, &record)
            .map_err(|e| DiffLogError::Serialise(e.to_string()))?;
        self.out
            .write_all(b"\n")
            .map_err(|source| self.io(source))?;
        self.written += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), DiffLogError> {
        self.out.flush().map_err(|source| self.io(source))
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn io(&self, source: std::io::Error) -> DiffLogError {
        DiffLogError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Reads every record of a diff log. Blank lines are skipped; any other line
/// that is not a record is an error naming the line. Records written before
/// rules were attributed are read as meant today
/// ([`DiffRecord::upgrade_legacy`]).
pub fn read_records(path: &Path) -> Result<Vec<DiffRecord>, DiffLogError> {
    RecordReader::open(path)?.collect()
}

/// The records of a diff log one at a time, through one reused line
/// buffer: memory does not grow with the log. Lines are read as
/// [`read_records`] reads them; the iterator ends after the first error.
#[derive(Debug)]
pub struct RecordReader {
    lines: NumberedLines<BufReader<File>>,
    path: PathBuf,
    done: bool,
}

impl RecordReader {
    pub fn open(path: &Path) -> Result<Self, DiffLogError> {
        let file = File::open(path).map_err(|source| DiffLogError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            lines: NumberedLines::new(BufReader::with_capacity(64 * 1024, file)),
            path: path.to_owned(),
            done: false,
        })
    }
}

impl Iterator for RecordReader {
    type Item = Result<DiffRecord, DiffLogError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let io_error = |source| DiffLogError::Io {
                path: self.path.clone(),
                source,
            };
            let parsed = match self.lines.next_line()? {
                Ok((line_no, line)) => match std::str::from_utf8(line) {
                    Ok(line) if line.trim().is_empty() => continue,
                    Ok(line) => serde_json::from_str::<DiffRecord>(line)
                        .map(|mut record| {
                            record.upgrade_legacy();
                            record
                        })
                        .map_err(|e| DiffLogError::Invalid {
                            path: self.path.clone(),
                            line: line_no,
                            reason: e.to_string(),
                        }),
                    Err(e) => Err(io_error(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    ))),
                },
                Err(source) => Err(io_error(source)),
            };
            self.done = parsed.is_err();
            return Some(parsed);
        }
        None
    }
}

/// Reads and concatenates several diff logs.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<DiffRecord>, DiffLogError> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(read_records(path)?);
    }
    Ok(all)
}
