//! Printing a plan for people, Terraform-style. Separate from computing it:
//! the plan is data ([`crate::Plan`]); this is one view of it.
//!
//! ```text
//! cp-1:
//!   + dir:/etc/demo  (directory does not exist)
//!   ~ file:/etc/demo/demo.conf  (content changed)
//!       --- /etc/demo/demo.conf (on the host)
//!       +++ /etc/demo/demo.conf (wanted)
//!       @@ -1,2 +1,2 @@
//!       -port=80
//!       +port=8080
//!   ↻ restart service:demo.service  (notified by file:/etc/demo/demo.conf)
//! w-1: no changes
//!
//! Plan: 1 to create, 1 to update, 0 to delete, 1 restart.
//! ```

use std::fmt::Write as _;

use crate::plan::{Action, ActionKind, Plan, StepPlan, Summary};

/// How to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrintOptions {
    /// ANSI colours (green create, yellow update, red delete, cyan restart/run).
    pub color: bool,
    /// Leave diffs out.
    pub no_diff: bool,
}

fn paint(s: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn marker(kind: ActionKind) -> (&'static str, &'static str, &'static str) {
    // (symbol, word before the resource, colour)
    match kind {
        ActionKind::Create => ("+", "", "32"),
        ActionKind::Update => ("~", "", "33"),
        ActionKind::Delete => ("-", "", "31"),
        ActionKind::Restart => ("↻", "restart ", "36"),
        ActionKind::Reload => ("↻", "reload ", "36"),
        ActionKind::Run => ("▶", "run ", "36"),
        ActionKind::Wait => ("⧗", "wait for ", "36"),
    }
}

fn action_line(out: &mut String, a: &Action, o: &PrintOptions) {
    let (sym, word, color) = marker(a.kind);
    let after = a
        .decided_after
        .map(|n| format!("  [decided after phase {n}]"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {} {word}{}  ({}){after}",
        paint(sym, color, o.color),
        a.resource,
        a.reason
    );
    if o.no_diff {
        return;
    }
    if a.sensitive {
        let _ = writeln!(out, "      (sensitive content hidden)");
    } else if let Some(d) = &a.diff {
        for line in d.lines() {
            let c = match line.as_bytes().first() {
                Some(b'+') if !line.starts_with("+++") => "32",
                Some(b'-') if !line.starts_with("---") => "31",
                Some(b'@') => "36",
                _ => "",
            };
            let shown = if c.is_empty() {
                line.to_string()
            } else {
                paint(line, c, o.color)
            };
            let _ = writeln!(out, "      {shown}");
        }
    }
}

/// The whole plan, ending with the summary line.
pub fn render(plan: &Plan, o: &PrintOptions) -> String {
    let mut out = String::new();
    render_steps(&mut out, &plan.steps, o);
    out.push('\n');
    out.push_str(&summary_line(&plan.summary));
    out.push('\n');
    out
}

/// A phased plan: each phase with its title, whether it runs, and what may
/// change once earlier phases have run; then the summary line.
///
/// ```text
/// Phase 1/2: install
/// cp-1:
///   + file:/etc/demo/demo.conf  (does not exist)
/// Phase 2/2: join  (decided after phase 1: planned from the hosts as they are now, planned again once phase 1 is applied)
/// w-1:  (decided after phase 1)
///   ▶ run command:join  (/var/lib/demo/member does not exist)  [decided after phase 1]
/// ```
pub fn render_phased(plan: &crate::PhasedPlan, o: &PrintOptions) -> String {
    let mut out = String::new();
    let n = plan.phases.len();
    for (i, p) in plan.phases.iter().enumerate() {
        let after = p
            .decided_after
            .map(|k| {
                format!("  (decided after phase {k}: planned from the hosts as they are now, planned again once phase {k} is applied)")
            })
            .unwrap_or_default();
        if p.runs {
            let _ = writeln!(out, "Phase {}/{n}: {}{after}", i + 1, p.title);
            render_steps(&mut out, &p.steps, o);
        } else {
            let _ = writeln!(out, "Phase {}/{n}: {}: skipped{after}", i + 1, p.title);
        }
    }
    out.push('\n');
    out.push_str(&summary_line(&plan.summary));
    out.push('\n');
    out
}

fn render_steps(out: &mut String, steps: &[StepPlan], o: &PrintOptions) {
    let many_steps = steps.len() > 1;
    for step in steps {
        if many_steps {
            let _ = writeln!(out, "Step {}:", step.name);
        }
        for h in &step.hosts {
            if let Some(holder) = &h.locked_by {
                let _ = writeln!(
                    out,
                    "{}: warning: another run holds the lock: {holder}",
                    h.host
                );
            }
            let after = h
                .decided_after
                .map(|n| format!("  (decided after phase {n})"))
                .unwrap_or_default();
            if h.actions.is_empty() {
                let _ = writeln!(out, "{}: no changes{after}", h.host);
                continue;
            }
            let _ = writeln!(out, "{}:{after}", h.host);
            for a in &h.actions {
                action_line(out, a, o);
            }
        }
    }
}

/// "Plan: 3 to create, 1 to update, 0 to delete, 1 restart." or "No changes. ..."
pub fn summary_line(s: &Summary) -> String {
    if s.total() == 0 {
        return "No changes. Every host matches the desired state.".to_string();
    }
    let mut line = format!(
        "Plan: {} to create, {} to update, {} to delete, {} restart{}",
        s.create,
        s.update,
        s.delete,
        s.restart,
        if s.restart == 1 { "" } else { "s" }
    );
    if s.reload > 0 {
        let _ = write!(
            line,
            ", {} reload{}",
            s.reload,
            if s.reload == 1 { "" } else { "s" }
        );
    }
    if s.run > 0 {
        let _ = write!(line, ", {} to run", s.run);
    }
    if s.wait > 0 {
        let _ = write!(
            line,
            ", {} probe{} to wait for",
            s.wait,
            if s.wait == 1 { "" } else { "s" }
        );
    }
    line.push('.');
    line
}
