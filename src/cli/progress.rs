//! Progress of an apply on the terminal: one line per host with its current
//! action, and a bar for the whole run. Where stderr is not a terminal (CI
//! logs), a plain line per host when it finishes instead.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8sup_engine::{Event, Plan, Progress};

pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    hosts: Mutex<HashMap<String, ProgressBar>>,
    plain: bool,
}

impl Bars {
    pub fn new(plan: &Plan) -> Bars {
        let plain = !std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let total = multi.add(ProgressBar::new(plan.summary.total() as u64));
        total.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} actions {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Bars {
            multi,
            total,
            hosts: Mutex::new(HashMap::new()),
            plain,
        }
    }

    pub fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }

    fn host_bar(&self, host: &str) -> ProgressBar {
        let mut hosts = self.hosts.lock().expect("progress lock");
        hosts
            .entry(host.to_string())
            .or_insert_with(|| {
                let b = self
                    .multi
                    .insert_before(&self.total, ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
                        .expect("valid template"),
                );
                b.set_prefix(host.to_string());
                b.enable_steady_tick(Duration::from_millis(120));
                b
            })
            .clone()
    }
}

impl Progress for Bars {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Verifying { hosts } => self
                .total
                .set_message(format!("checking {hosts} hosts for drift and locks")),
            Event::StepStarted { step, hosts } => {
                self.total
                    .set_message(format!("step {step} on {hosts} hosts"));
            }
            Event::HostStarted {
                host,
                step,
                actions,
            } => {
                self.host_bar(host)
                    .set_message(format!("{step}: {actions} actions"));
            }
            Event::ActionStarted { host, action } => {
                self.host_bar(host)
                    .set_message(format!("{:?} {}", action.kind, action.resource).to_lowercase());
            }
            Event::ActionFinished { .. } => self.total.inc(1),
            Event::Upload {
                host,
                path,
                sent,
                total,
            } => {
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                self.host_bar(host).set_message(format!(
                    "upload {path} {:.0}/{:.0} MiB",
                    mib(sent),
                    mib(total)
                ));
            }
            Event::Waiting {
                host,
                action,
                pending,
            } => {
                if self.plain {
                    eprintln!("{host}: {}: waiting: {pending}", action.resource);
                }
                self.host_bar(host)
                    .set_message(format!("{}: waiting: {pending}", action.resource));
            }
            Event::HostFinished { host, step, ok } => {
                let word = if ok { "done" } else { "FAILED" };
                if self.plain {
                    eprintln!("{host}: {step}: {word}");
                }
                let bar = self.hosts.lock().expect("progress lock").remove(host);
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
            }
        }
    }
}
