//! Where events go: JSON lines (Falco's shape) to a stream, or appended to
//! a file that is rotated by size.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use minerguard::{falco_json, Enforcer};

use crate::{CliResult, PREFIX};

/// Rotated files kept beside an events file (`FILE.1` newest … `FILE.5`).
pub const ROTATED_KEPT: u32 = 5;

/// An event stream's destination: whole lines only, so a rotation never
/// splits an event.
pub enum Sink {
    /// A stream (stdout, stderr).
    Stream(Box<dyn Write + Send>),
    /// A file, appended to and rotated past a size.
    File(RotatingFile),
}

impl Sink {
    /// `path` opened for appending (created when missing): a restarted
    /// command never loses the alerts an earlier one wrote. With
    /// `max_size`, the file is rotated before a line would take it past
    /// that many bytes. `default` without a path.
    pub fn open(
        path: Option<&Path>,
        max_size: Option<u64>,
        default: Box<dyn Write + Send>,
    ) -> CliResult<Sink> {
        Ok(match path {
            Some(p) => Sink::File(RotatingFile::open(p, max_size)?),
            None => Sink::Stream(default),
        })
    }

    pub(crate) fn write_line(&mut self, line: &str) {
        let result = match self {
            Sink::Stream(out) => writeln!(out, "{line}").and_then(|()| out.flush()),
            Sink::File(file) => file.write_line(line),
        };
        if let Err(e) = result {
            // Never fatal: enforcement goes on whatever happens to its log.
            eprintln!("{PREFIX}: warning: writing an event failed: {e}");
        }
    }
}

/// An append-only events file with size-based rotation.
pub struct RotatingFile {
    path: PathBuf,
    max_size: Option<u64>,
    file: File,
    size: u64,
}

impl RotatingFile {
    fn open(path: &Path, max_size: Option<u64>) -> CliResult<RotatingFile> {
        let file = append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_size,
            file,
            size,
        })
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if let Some(max) = self.max_size {
            // A line longer than the limit still gets a file of its own.
            if self.size > 0 && self.size + len > max {
                self.rotate()?;
            }
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.size += len;
        Ok(())
    }

    /// `FILE.4` -> `FILE.5` … `FILE` -> `FILE.1`, then a new `FILE`.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..ROTATED_KEPT).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = append(&self.path).map_err(|e| io::Error::other(e.to_string()))?;
        self.size = 0;
        Ok(())
    }
}

fn append(path: &Path) -> CliResult<File> {
    Ok(OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {} for events: {e}", path.display()))?)
}

/// `4096`, `64K`, `10M`, `1G` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 4096, 64K, 10M, 1G)"))?;
    let scale: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` in `{text}` (K, M or G)")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err("the size must be above zero".into()),
        Some(size) => Ok(size),
        None => Err(format!("`{text}` is too large")),
    }
}

/// The thread writing the enforcer's events, and lines made elsewhere
/// (scan findings: [`Writer::lines`]); [`Writer::finish`] drains it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    lines: crossbeam_channel::Sender<String>,
}

impl Writer {
    /// Writes each event of `enforcer` as a JSON line to `out` until the
    /// channel closes or [`Writer::finish`] is called.
    pub fn spawn(enforcer: &Enforcer, out: Sink) -> Writer {
        Self::spawn_with(enforcer, vec![out], falco_json)
    }

    /// Writes each event of `enforcer`, as `format` makes its line, to
    /// every sink of `outs`.
    pub fn spawn_with(
        enforcer: &Enforcer,
        mut outs: Vec<Sink>,
        format: impl Fn(&minerguard::Event) -> String + Send + 'static,
    ) -> Writer {
        let rx = enforcer.events();
        // Unbounded: findings are few, and a scan must not wait on a sink.
        let (lines, lines_rx) = crossbeam_channel::unbounded::<String>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || loop {
            let line = crossbeam_channel::select! {
                recv(rx) -> ev => match ev {
                    Ok(ev) => format(&ev),
                    Err(_) => return,
                },
                // The Writer holds a sender: this never disconnects first.
                recv(lines_rx) -> line => match line {
                    Ok(line) => line,
                    Err(_) => return,
                },
                default(Duration::from_millis(100)) => {
                    // Nothing more arrived for a poll interval: drained.
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
            };
            for out in &mut outs {
                out.write_line(&line);
            }
        });
        Writer {
            stop,
            thread,
            lines,
        }
    }

    /// Where lines that are not enforcement events (scan findings, already
    /// formatted) go, to the same sinks, in arrival order.
    pub fn lines(&self) -> crossbeam_channel::Sender<String> {
        self.lines.clone()
    }

    /// Waits until the events queued so far are written, then ends.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_and_refuse_the_rest() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("0").unwrap_err().contains("above zero"));
        assert!(parse_size("5T").unwrap_err().contains("unknown unit"));
        assert!(parse_size("big").unwrap_err().contains("not a size"));
        assert!(parse_size("99999999999999G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn a_file_past_its_size_is_rotated_at_line_boundaries() {
        let dir = std::env::temp_dir().join(format!("mg-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut sink = Sink::open(Some(&path), Some(20), Box::new(io::sink())).unwrap();
        // 8 bytes kept, then 10 + 10 would pass 20: rotated before the second.
        for line in ["line-0001", "line-0002", "line-0003", "line-0004"] {
            sink.write_line(line);
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert_eq!(read(&numbered(2)), "earlier\nline-0001\n");
        assert_eq!(read(&numbered(1)), "line-0002\nline-0003\n");
        assert_eq!(read(&path), "line-0004\n");
        // Never more than ROTATED_KEPT old files.
        for i in 0..20 {
            sink.write_line(&format!("line-{i:04}+"));
        }
        assert!(numbered(ROTATED_KEPT).exists());
        assert!(!numbered(ROTATED_KEPT + 1).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
