//! Long waits say what they wait for (issue 16): an OVH step whose task takes long is named
//! while the run waits for it, instead of minutes of silence.

use crate::support::lines::wait_for_line;
use std::time::Duration;

use super::World;
use ovh_sim::Fault;

#[test]
fn an_ovh_step_waiting_on_a_slow_task_says_so_while_it_waits() {
    let w = World::new("");
    let plan = w.plan("");
    let plan = plan.to_str().expect("utf-8");
    // The first task takes seconds: the step that made it waits for it.
    w.sim
        .inject(Fault::slow_tasks(4000, 4000).on_path("/email/").times(1));
    let mut child = w
        .command(&["apply", plan])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let (notice, seen) = wait_for_line(&mut child, "waiting for ", Duration::from_secs(30));
    child.kill().ok();
    child.wait().ok();
    let notice = notice.unwrap_or_else(|| panic!("no notice of the wait: {seen:?}"));
    assert!(
        notice.contains("(the OVH API and its tasks)") && notice.contains("s so far"),
        "{notice}"
    );
    // It names a step that started and has not ended.
    let step = notice
        .trim_start_matches("waiting for ")
        .split(" (")
        .next()
        .expect("a step");
    assert!(
        seen.iter().any(|l| l == &format!("start   {step}")),
        "{notice}: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with(&format!("done    {step}"))),
        "{notice}: {seen:?}"
    );
}
