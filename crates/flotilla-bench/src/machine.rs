//! What the benchmark ran on, read at run time: cores (`nproc`), CPU model
//! (`/proc/cpuinfo`), memory (`free -g`), kernel (`uname -r`), OS, the data directory's
//! filesystem (fsync cost depends on it) and the git commit.

use std::path::Path;
use std::process::Command;

/// The machine and the code under test.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: String,
    pub cpu_model: String,
    pub memory_gib: String,
    pub kernel: String,
    pub os: String,
    pub filesystem: String,
    pub commit: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the run started.
    pub load: String,
}

impl Machine {
    /// Reads everything; a value that cannot be read is reported as `unknown`.
    pub fn describe(data_dir: &Path, repo: &Path) -> Self {
        let cores = command_output("nproc", &[]).unwrap_or_else(unknown);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(unknown);
        let memory_gib = command_output("free", &["-g"])
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("Mem:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(|total| format!("{total} GiB")))
            })
            .unwrap_or_else(unknown);
        let kernel = command_output("uname", &["-r"]).unwrap_or_else(unknown);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(unknown);
        let dir = data_dir.display().to_string();
        let filesystem = command_output("findmnt", &["-n", "-o", "FSTYPE", "--target", &dir])
            .or_else(|| command_output("stat", &["-f", "-c", "%T", &dir]))
            .unwrap_or_else(unknown);
        let repo = repo.display().to_string();
        let commit = match command_output("git", &["-C", &repo, "rev-parse", "--short", "HEAD"]) {
            Some(commit) => {
                let dirty = command_output("git", &["-C", &repo, "status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty { format!("{commit} (plus uncommitted changes)") } else { commit }
            }
            None => unknown(),
        };
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(unknown);
        Self { cores, cpu_model, memory_gib, kernel, os, filesystem, commit, load }
    }

    /// One line for the report: `2 cores (AMD EPYC), 23 GiB, Debian 12, kernel 6.1`.
    pub fn one_line(&self) -> String {
        format!(
            "{} cores ({}), {} RAM (`free -g`), {}, kernel {}, data dir on {}; load average {} at the start",
            self.cores, self.cpu_model, self.memory_gib, self.os, self.kernel, self.filesystem, self.load
        )
    }
}

fn unknown() -> String {
    "unknown".to_string()
}

/// The trimmed stdout of a command that succeeded.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
