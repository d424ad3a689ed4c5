//! Progress on stderr: a bar redrawn in place on a terminal, one line per strategy
//! otherwise (logs and CI).

use std::io::{IsTerminal, Write};
use std::time::Instant;

const WIDTH: usize = 28;

pub struct Progress {
    name: String,
    total: usize,
    done: usize,
    correct: usize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    pub fn start(name: String, total: usize) -> Self {
        let progress = Progress {
            name,
            total,
            done: 0,
            correct: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        };
        progress.draw();
        progress
    }

    pub fn tick(&mut self, correct: bool) {
        self.done += 1;
        self.correct += usize::from(correct);
        self.draw();
    }

    pub fn finish(self) {
        let line = self.line();
        if self.terminal {
            eprintln!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }

    fn draw(&self) {
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\x1b[K", self.line());
            let _ = err.flush();
        }
    }

    fn line(&self) -> String {
        let filled = (self.done * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        let bar: String = "█".repeat(filled) + &"░".repeat(WIDTH - filled);
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if self.done == 0 {
            String::new()
        } else {
            let left = elapsed / self.done as f64 * (self.total - self.done) as f64;
            if self.done < self.total {
                format!(", {} left", clock(left))
            } else {
                String::new()
            }
        };
        format!("{:<28} {bar} {}/{} ({} right) {}{eta}", self.name, self.done, self.total, self.correct, clock(elapsed))
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
