//! Instance logs: containerd writes each container's output to a file in the CRI format
//! (`<RFC 3339 time> <stdout|stderr> <P|F> <text>`, long lines split into partial `P` parts
//! ended by a full `F` one). This module reads them back (joining partial lines, filtering by
//! time, keeping the last N), follows a file as it grows, and rotates files by size (the
//! runtime then asks containerd to reopen the log, as the kubelet does).

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flotilla_driver::{LogLine, LogStream};

/// One parsed line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine {
    pub time_micros: i64,
    pub stream: LogStream,
    /// `P`: the line continues in the next record of the same stream.
    pub partial: bool,
    pub text: String,
}

/// Parses one record; `None` for a malformed one.
pub fn parse_line(line: &str) -> Option<CriLine> {
    let mut parts = line.splitn(4, ' ');
    let time: jiff::Timestamp = parts.next()?.parse().ok()?;
    let stream = match parts.next()? {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or_default().trim_end_matches('\n').to_string();
    Some(CriLine { time_micros: time.as_microsecond(), stream, partial, text })
}

/// Joins partial records into whole lines, per stream, keeping the order of completion.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: [Option<CriLine>; 2],
}

impl Joiner {
    /// Feeds one record; returns a whole line when this record completes one.
    pub fn push(&mut self, record: CriLine) -> Option<CriLine> {
        let slot = match record.stream {
            LogStream::Stdout | LogStream::Combined => 0,
            LogStream::Stderr => 1,
        };
        let joined = match self.pending[slot].take() {
            Some(mut start) => {
                start.text.push_str(&record.text);
                start.partial = record.partial;
                start
            }
            None => record,
        };
        if joined.partial {
            self.pending[slot] = Some(joined);
            None
        } else {
            Some(joined)
        }
    }
}

/// The files of one log, oldest first: rotated ones (`.2`, `.1`), then the current one.
pub fn files(current: &Path, keep: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|n| rotated(current, n)).filter(|p| p.exists()).collect();
    if current.exists() {
        files.push(current.to_path_buf());
    }
    files
}

fn rotated(current: &Path, n: usize) -> PathBuf {
    let mut name = current.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Reads whole lines from `files` (oldest first) at or after `since_micros`, as `instance`'s.
pub fn read(files: &[PathBuf], instance: &str, since_micros: Option<i64>) -> Vec<LogLine> {
    let mut joiner = Joiner::default();
    let mut lines = Vec::new();
    for file in files {
        let Ok(handle) = std::fs::File::open(file) else { continue };
        for record in BufReader::new(handle).lines().map_while(Result::ok).filter_map(|l| parse_line(&l)) {
            if let Some(line) = joiner.push(record)
                && since_micros.is_none_or(|since| line.time_micros >= since)
            {
                lines.push(LogLine {
                    time_micros: line.time_micros,
                    instance: instance.to_string(),
                    stream: line.stream,
                    text: line.text,
                });
            }
        }
    }
    lines
}

/// Keeps the last `tail` lines.
pub fn tail(mut lines: Vec<LogLine>, tail: Option<usize>) -> Vec<LogLine> {
    if let Some(n) = tail
        && lines.len() > n
    {
        lines.drain(..lines.len() - n);
    }
    lines
}

/// Follows one log file as it grows, across rotations: it keeps the file it reads open, and
/// when the path names a new file (rotated and reopened), it first reads the old one to its
/// end, so that no line written before the switch is lost.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    instance: String,
    file: Option<(std::fs::File, u64)>,
    offset: u64,
    joiner: Joiner,
}

impl Follower {
    pub fn new(path: PathBuf, instance: impl Into<String>) -> Self {
        Self { path, instance: instance.into(), file: None, offset: 0, joiner: Joiner::default() }
    }

    /// Whole lines written since the last call.
    pub fn poll(&mut self) -> Vec<LogLine> {
        use std::os::unix::fs::MetadataExt;
        let mut lines = Vec::new();
        if self.file.is_none() {
            self.open();
        }
        self.drain(&mut lines);
        let replaced = match (std::fs::metadata(&self.path), &self.file) {
            (Ok(metadata), Some((_, inode))) => metadata.ino() != *inode,
            _ => false,
        };
        if replaced {
            self.drain(&mut lines);
            self.open();
            self.drain(&mut lines);
        }
        lines
    }

    fn open(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.file = std::fs::File::open(&self.path)
            .ok()
            .and_then(|file| file.metadata().ok().map(|m| m.ino()).map(|inode| (file, inode)));
        self.offset = 0;
    }

    /// Reads the open file's complete records from the offset on.
    fn drain(&mut self, lines: &mut Vec<LogLine>) {
        let Some((file, _)) = self.file.as_mut() else { return };
        if file.metadata().is_ok_and(|m| m.len() < self.offset) {
            // Truncated in place: start over.
            self.offset = 0;
        }
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut reader = BufReader::new(&*file);
        let mut buffer = String::new();
        loop {
            buffer.clear();
            match reader.read_line(&mut buffer) {
                Ok(0) | Err(_) => break,
                // An unfinished record: read it whole next time.
                Ok(_) if !buffer.ends_with('\n') => break,
                Ok(read) => {
                    self.offset += read as u64;
                    if let Some(record) = parse_line(&buffer)
                        && let Some(line) = self.joiner.push(record)
                    {
                        lines.push(LogLine {
                            time_micros: line.time_micros,
                            instance: self.instance.clone(),
                            stream: line.stream,
                            text: line.text,
                        });
                    }
                }
            }
        }
    }
}

/// Rotates `current` when it is larger than `max_bytes`: `.1` becomes `.2` and so on up to
/// `keep`, the current file becomes `.1`. True when it rotated (the writer must reopen).
pub fn rotate_if_larger(current: &Path, max_bytes: u64, keep: usize) -> std::io::Result<bool> {
    let size = match std::fs::metadata(current) {
        Ok(metadata) => metadata.len(),
        Err(_) => return Ok(false),
    };
    if size <= max_bytes || keep == 0 {
        return Ok(false);
    }
    for n in (1..keep).rev() {
        let from = rotated(current, n);
        if from.exists() {
            std::fs::rename(&from, rotated(current, n + 1))?;
        }
    }
    std::fs::rename(current, rotated(current, 1))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_partials_join_per_stream() {
        let records = [
            "2026-11-24T10:00:00.000000001Z stdout P hel",
            "2026-11-24T10:00:00.000000002Z stderr F oops",
            "2026-11-24T10:00:00.000000003Z stdout F lo",
            "not a record",
        ];
        let mut joiner = Joiner::default();
        let lines: Vec<CriLine> = records.iter().filter_map(|r| parse_line(r)).filter_map(|r| joiner.push(r)).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].stream, lines[0].text.as_str()), (LogStream::Stderr, "oops"));
        assert_eq!((lines[1].stream, lines[1].text.as_str()), (LogStream::Stdout, "hello"));
        assert_eq!(parse_line("2026-11-24T10:00:00Z stdout F ").unwrap().text, "", "an empty line");
    }

    #[test]
    fn files_rotate_by_size_and_read_back_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("web.log");
        let record = |n: u32| format!("2026-11-24T10:00:{n:02}Z stdout F line {n}\n");
        for n in 0..3 {
            std::fs::write(&current, record(n)).unwrap();
            assert!(rotate_if_larger(&current, 10, 2).unwrap());
        }
        std::fs::write(&current, record(3)).unwrap();
        assert!(!rotate_if_larger(&current, 1000, 2).unwrap(), "small enough");
        let all = read(&files(&current, 2), "web-1", None);
        let texts: Vec<&str> = all.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["line 1", "line 2", "line 3"], "the oldest rotation beyond 2 is gone");
        let since = jiff::Timestamp::from_second(1_795_514_402).unwrap(); // 2026-11-24T10:00:02Z
        let recent = read(&files(&current, 2), "web-1", Some(since.as_microsecond()));
        assert_eq!(recent.len(), 2);
        assert_eq!(tail(all, Some(1))[0].text, "line 3");
    }

    #[test]
    fn following_reads_only_what_is_new_and_loses_nothing_across_a_rotation() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("web.log");
        std::fs::write(&current, "2026-11-24T10:00:00Z stdout F one\n2026-11-24T10:00:01Z stdout P tw").unwrap();
        let mut follower = Follower::new(current.clone(), "i");
        let texts = |lines: Vec<LogLine>| lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(follower.poll()), vec!["one"]);
        let mut writer = std::fs::OpenOptions::new().append(true).open(&current).unwrap();
        writer.write_all(b"o\n2026-11-24T10:00:01Z stdout F o\n").unwrap();
        assert_eq!(texts(follower.poll()), vec!["twoo"]);
        // Rotated; the writer still writes to the old file until it reopens.
        assert!(rotate_if_larger(&current, 1, 1).unwrap());
        writer.write_all(b"2026-11-24T10:00:02Z stdout F late in the old file\n").unwrap();
        std::fs::write(&current, "2026-11-24T10:00:03Z stderr F three\n").unwrap();
        assert_eq!(texts(follower.poll()), vec!["late in the old file", "three"]);
        assert!(follower.poll().is_empty());
    }
}
