//! RayJob submitters as the simulated cluster runs them: the container of a K8sJobMode submitter Job's Pod, or the
//! SidecarMode container of a head Pod, whose command runs `ray job submit`.
//!
//! The simulated kubelet hands such a container to [`run`] instead of ending it on its timer. With simulated
//! dashboards its command is played, not executed: [`Submitter::of`] reads the shell command as bash would split it
//! (the container's `$VAR`s expanded from its env) and keeps what the `ray job` CLI would do, which [`play`] then
//! does against the dashboard the address names, in the order of the dedup command (DEVIATIONS 1 and 14):
//! 1. when the command waits for `/api/gcs_healthz` (SidecarMode), ask it every 2 s until it says `success`;
//! 2. when `ray job status` comes before `ray job submit`, submit only if the dashboard does not know the id;
//! 3. submit (`POST /api/jobs/`, the body `ray job submit` sends); a refusal ends the container with exit code 1,
//!    as `bash -ce` does;
//! 4. when the command follows the job (`ray job logs --follow`, or `ray job submit` without `--no-wait`), tail its
//!    log over the websocket, writing each line to the container's output, then print the final status as the CLI
//!    does (`Job 'ID' succeeded`, `failed` with its message, `was stopped`);
//! 5. exit 1 when the job ended FAILED and the command says so (the final `grep -qF "Job 'ID' failed"` of the
//!    dedup command, or a blocking `ray job submit`), else 0 (a STOPPED job is no failure).
//!
//! A `127.0.0.1` or `localhost` address is the container's own Pod (a sidecar's head); any other resolves as cluster
//! DNS does ([`super::network::resolve`]). Approximations: the shell's control flow is not interpreted (a command
//! that runs `ray job submit` is taken for a submitter of this shape), an entrypoint ends at the first `;`, `&&`,
//! `||` or `|` word, and the CLI's output is the gist of Ray's, not its every line.
//!
//! With a real Ray head ([`super::RayDashboard::Real`]) the command itself runs as a local process — the real `ray`
//! CLI, found on `PATH` — with every dashboard address in it and in its env rewritten to the real head's URL; its
//! output is the container's, its exit status the container's exit code. It runs in a process group of its own,
//! killed when its Pod goes (the `ray` CLI it started too), as a container's processes end with it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::Shared;
use super::controllers::{self, Instance};
use super::error::ApiError;
use super::network;

/// How often a SidecarMode submitter asks the dashboard whether the GCS is healthy (the command's `sleep 2`).
const GCS_WAIT_INTERVAL: Duration = Duration::from_secs(2);
/// How often a running submitter looks whether its Pod is still there.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(1);
/// The address the `ray` CLI uses when neither `--address` nor its env names one.
const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8265";
/// The exit code of a process killed by a signal, as the kubelet reports a SIGKILL.
const KILLED_EXIT_CODE: i32 = 137;

/// What a submitter container's command does, as far as the dashboard sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitter {
    /// The dashboard address the command talks to, `http://host:port`.
    pub address: String,
    /// `--submission-id`; without it the dashboard picks one (`raysubmit_…`).
    pub submission_id: Option<String>,
    /// The body of `POST /api/jobs/` that `ray job submit` sends, `submission_id` set when the command names it.
    pub submission: Value,
    pub waits_for_gcs: bool,
    /// `ray job status` comes first: submit only a job the dashboard does not know.
    pub checks_first: bool,
    /// Follows the job's log until it ends.
    pub follows: bool,
    /// Exits 1 when the job ended FAILED.
    pub fails_when_failed: bool,
}

/// Words that end a command in a shell line.
const SEPARATORS: [&str; 4] = [";", "&&", "||", "|"];

impl Submitter {
    /// The submitter a container runs, if its command runs `ray job submit` (and splits as a shell would).
    pub fn of(container: &Value) -> Option<Submitter> {
        let env = container_env(container);
        let words = shlex::split(&expand(&script(container)?, &env))?;
        let submit = words.windows(3).position(|w| w == ["ray", "job", "submit"])?;
        let mut submission = Map::new();
        let mut address = None;
        let mut submission_id = None;
        let mut no_wait = false;
        let mut rest = words[submit + 3..].iter().map(String::as_str).take_while(|w| !SEPARATORS.contains(w));
        let mut entrypoint: Vec<&str> = Vec::new();
        while let Some(word) = rest.next() {
            if word == "--" || !word.starts_with("--") {
                entrypoint.extend((word != "--").then_some(word));
                entrypoint.extend(rest.by_ref());
                break;
            }
            if word == "--no-wait" {
                no_wait = true;
                continue;
            }
            let (option, value) = match word.split_once('=') {
                Some((option, value)) => (option, Some(value)),
                None => (word, rest.next()),
            };
            let value = value.unwrap_or_default();
            let parsed = || serde_json::from_str::<Value>(value).unwrap_or_else(|_| json!(value));
            match option {
                "--address" => address = Some(value.to_string()),
                "--submission-id" | "--job-id" => submission_id = Some(value.to_string()),
                "--runtime-env-json" => _ = submission.insert("runtime_env".to_string(), parsed()),
                "--metadata-json" => _ = submission.insert("metadata".to_string(), parsed()),
                "--entrypoint-resources" => _ = submission.insert("entrypoint_resources".to_string(), parsed()),
                "--entrypoint-num-cpus" => _ = submission.insert("entrypoint_num_cpus".to_string(), parsed()),
                "--entrypoint-num-gpus" => _ = submission.insert("entrypoint_num_gpus".to_string(), parsed()),
                _ => {}
            }
        }
        // `ray job submit` sends Python's `shlex.join` of the words after `--`; this one may quote differently (double
        // quotes where Python closes and reopens single ones), which a shell reads the same.
        submission.insert("entrypoint".to_string(), json!(shlex::try_join(entrypoint).ok()?));
        if let Some(id) = &submission_id {
            submission.insert("submission_id".to_string(), json!(id));
        }
        let address = address
            .or_else(|| ["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"].iter().find_map(|name| env.get(*name).cloned()))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
        let failure_check = submission_id.as_ref().map(|id| format!("Job '{id}' failed"));
        let follows_logs = words.windows(3).enumerate().any(|(at, w)| {
            at > submit && w == ["ray", "job", "logs"] && words[at + 3..].iter().any(|w| w == "--follow" || w == "-f")
        });
        Some(Submitter {
            address: if address.contains("://") { address } else { format!("http://{address}") },
            submission_id,
            submission: Value::Object(submission),
            waits_for_gcs: words.iter().any(|w| w.contains("/api/gcs_healthz")),
            checks_first: words[..submit].windows(3).any(|w| w == ["ray", "job", "status"]),
            follows: follows_logs || !no_wait,
            fails_when_failed: !no_wait || words.iter().any(|w| Some(w) == failure_check.as_ref()),
        })
    }

    /// `host:port` of the address.
    fn authority(&self) -> &str {
        let rest = self.address.split_once("://").map_or(self.address.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest)
    }
}

/// The shell line a container runs: the script of `sh -c`/`bash -ce …`, else its words joined. None when it runs
/// its image's entrypoint.
fn script(container: &Value) -> Option<String> {
    let words = controllers::command_words(container);
    let shell = words.first().is_some_and(|program| program.ends_with("sh"));
    let flag = words.iter().position(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('c'));
    match (shell, flag) {
        (true, Some(at)) => words.get(at + 1).map(|script| (*script).to_string()),
        _ if words.is_empty() => None,
        _ => shlex::try_join(words).ok(),
    }
}

/// The container's env with literal values.
fn container_env(container: &Value) -> std::collections::BTreeMap<String, String> {
    container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|var| Some((var.get("name")?.as_str()?.to_string(), var.get("value")?.as_str()?.to_string())))
        .collect()
}

/// `$NAME` and `${NAME}` replaced by the env's values (unknown names left as written).
fn expand(script: &str, env: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{').and_then(|inner| inner.split_once('}')) {
            Some((name, _)) => (name, name.len() + 2),
            None => {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match env.get(name) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[at..at + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Runs a submitter container until its command ends or its Pod goes, and records how it ended (the container
/// terminated with the exit code; the Pod's phase follows). `real_dashboard`: run the command itself against that
/// URL instead of playing it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    pod: Instance,
    container: Value,
    submitter: Submitter,
    real_dashboard: Option<String>,
) {
    let name = container.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let io = Io { shared: shared.clone(), pod: pod.clone(), container: name.clone() };
    let command = async {
        match &real_dashboard {
            Some(url) => execute(&io, &container, &submitter, url).await,
            None => play(&io, &submitter).await,
        }
    };
    let code = tokio::select! {
        code = command => code,
        () = gone(&shared, &pod) => return,
    };
    shared.write(|store| controllers::finish_container(store, &pod, &name, code));
}

/// Resolves when the Pod is gone, replaced, being deleted or terminal.
async fn gone(shared: &Shared, pod: &Instance) {
    while shared.read(|store| controllers::is_live(store, pod)) {
        tokio::time::sleep(LIVENESS_INTERVAL).await;
    }
}

/// A submitter's view of the cluster: its output, and the dashboard behind an address.
struct Io {
    shared: Arc<Shared>,
    pod: Instance,
    container: String,
}

impl Io {
    fn print(&self, line: &str) {
        self.shared.write(|store| store.append_log(&self.pod.uid, &self.container, line));
    }

    fn process(&self, authority: &str) -> Result<Arc<dyn network::Process>, ApiError> {
        self.shared.connect(authority, Some(&self.pod))
    }

    async fn call(
        &self,
        authority: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), String> {
        let process = self.process(authority).map_err(|e| e.message)?;
        let bytes = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(bytes)
            .map_err(|e| e.to_string())?;
        let response = process.call(request).await;
        Ok((response.status(), String::from_utf8_lossy(response.body()).into_owned()))
    }

    /// `GET /api/jobs/ID`: the job's info, None when the dashboard does not know it or cannot be reached.
    async fn job(&self, authority: &str, id: &str) -> Option<Value> {
        match self.call(authority, Method::GET, &format!("/api/jobs/{id}"), None).await {
            Ok((status, body)) if status.is_success() => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }
}

/// Plays the submitter's command against a simulated dashboard (module docs); the exit code.
async fn play(io: &Io, submitter: &Submitter) -> i32 {
    let authority = submitter.authority();
    if submitter.waits_for_gcs {
        loop {
            match io.call(authority, Method::GET, "/api/gcs_healthz", None).await {
                Ok((status, body)) if status.is_success() && body.contains("success") => break,
                _ => io.print(&format!("Waiting for Ray Dashboard GCS to become healthy at {} ...", submitter.address)),
            }
            tokio::time::sleep(GCS_WAIT_INTERVAL).await;
        }
    }
    let known = match (&submitter.submission_id, submitter.checks_first) {
        (Some(id), true) => io.job(authority, id).await.is_some(),
        _ => false,
    };
    let id = if known {
        submitter.submission_id.clone().unwrap_or_default()
    } else {
        io.print(&format!("Job submission server address: {}", submitter.address));
        match io.call(authority, Method::POST, "/api/jobs/", Some(&submitter.submission)).await {
            Ok((status, body)) if status.is_success() => {
                let id = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|answer| answer.get("submission_id").and_then(Value::as_str).map(str::to_string))
                    .or_else(|| submitter.submission_id.clone())
                    .unwrap_or_default();
                io.print(&format!("Job '{id}' submitted successfully"));
                id
            }
            Ok((status, body)) => {
                io.print(&format!(
                    "RuntimeError: Request failed with status code {}: {}",
                    status.as_u16(),
                    body.trim_end()
                ));
                return 1;
            }
            Err(error) => {
                io.print(&format!(
                    "ConnectionError: Failed to connect to Ray at address: {}. {error}",
                    submitter.address
                ));
                return 1;
            }
        }
    };
    if !submitter.follows {
        return 0;
    }
    if let Err(error) = follow(io, authority, &id).await {
        io.print(&error);
        return 1;
    }
    let info = io.job(authority, &id).await.unwrap_or(Value::Null);
    let status = info.get("status").and_then(Value::as_str).unwrap_or_default();
    match status {
        "SUCCEEDED" => io.print(&format!("Job '{id}' succeeded")),
        "STOPPED" => io.print(&format!("Job '{id}' was stopped")),
        "FAILED" => {
            io.print(&format!("Job '{id}' failed"));
            let message = info.get("message").and_then(Value::as_str).unwrap_or_default();
            io.print(&format!("Status message: {message}"));
        }
        other => io.print(&format!("Status for job '{id}': {other}")),
    }
    i32::from(status == "FAILED" && submitter.fails_when_failed)
}

/// `ray job logs --follow`: every line of the job's log tail, until the dashboard closes it.
async fn follow(io: &Io, authority: &str, id: &str) -> Result<(), String> {
    let process = io.process(authority).map_err(|e| e.message)?;
    let request = http::Request::get(format!("/api/jobs/{id}/logs/tail"))
        .header(http::header::UPGRADE, "websocket")
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let mut frames = match process.websocket(request).await {
        Ok(accepted) => accepted.into_body(),
        Err(refused) => {
            return Err(format!(
                "RuntimeError: Request failed with status code {}: {}",
                refused.status().as_u16(),
                String::from_utf8_lossy(refused.body()).trim_end()
            ));
        }
    };
    while let Some(frame) = frames.next().await {
        for line in frame.lines() {
            io.print(line);
        }
    }
    Ok(())
}

/// Runs the container's command as a local process against the real head at `url` (module docs); the exit code.
async fn execute(io: &Io, container: &Value, submitter: &Submitter, url: &str) -> i32 {
    let url = url.trim_end_matches('/');
    let real_authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rewrite = |text: &str| text.replace(&submitter.address, url).replace(submitter.authority(), real_authority);
    let words: Vec<String> = controllers::command_words(container).into_iter().map(rewrite).collect();
    let Some((program, args)) = words.split_first() else { return 1 };
    let mut command = tokio::process::Command::new(program);
    command
        .process_group(0)
        .args(args)
        .envs(container_env(container).into_iter().map(|(name, value)| (name, rewrite(&value))))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            io.print(&format!("exec {program}: {error}"));
            return 127;
        }
    };
    let group = child.id().map(ProcessGroup);
    let pipe = |reader: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| async move {
        let Some(reader) = reader else { return };
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(reader));
        while let Ok(Some(line)) = lines.next_line().await {
            io.print(&line);
        }
    };
    let stdout = child.stdout.take().map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let stderr = child.stderr.take().map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let ((), (), status) = tokio::join!(pipe(stdout), pipe(stderr), child.wait());
    // Ended by itself: nothing to kill (and its group id may be reused by now).
    std::mem::forget(group);
    match status {
        Ok(status) => status.code().unwrap_or(KILLED_EXIT_CODE),
        Err(error) => {
            io.print(&format!("wait: {error}"));
            1
        }
    }
}

/// The process group of a submitter run as a local process: killed when the submitter is dropped before it ends (its
/// Pod went), so that the `ray` CLI it started goes too, as a container's processes do.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let leader = i32::try_from(self.0).ok().and_then(rustix::process::Pid::from_raw);
        if let Some(leader) = leader {
            // Already gone is fine.
            let _ = rustix::process::kill_process_group(leader, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn bash(script: &str, env: Value) -> Value {
        json!({"name": "ray-job-submitter", "command": ["/bin/bash"], "args": ["-ce", script], "env": env})
    }

    #[rstest]
    #[case::user_command_with_env(
        json!({"name": "c", "command": ["sh", "-c", "ray job submit --address=http://$RAY_DASHBOARD_ADDRESS --submission-id=$RAY_JOB_SUBMISSION_ID -- echo hello world"],
               "env": [{"name": "RAY_DASHBOARD_ADDRESS", "value": "head-svc.ns.svc.cluster.local:8265"}, {"name": "RAY_JOB_SUBMISSION_ID", "value": "id-1"}]}),
        "http://head-svc.ns.svc.cluster.local:8265", Some("id-1"), json!({"entrypoint": "echo hello world", "submission_id": "id-1"}),
        (false, false, true, true)
    )]
    #[case::no_wait_without_follow(
        bash("ray job submit --no-wait --address 10.0.0.1:8265 -- python -c 'import sys; sys.exit(1)'", json!([])),
        "http://10.0.0.1:8265", None, json!({"entrypoint": "python -c 'import sys; sys.exit(1)'"}),
        (false, false, false, false)
    )]
    #[case::address_from_env(
        bash("ray job submit -- sleep 3", json!([{"name": "RAY_ADDRESS", "value": "http://a:1"}])),
        "http://a:1", None, json!({"entrypoint": "sleep 3"}), (false, false, true, true)
    )]
    fn commands_read_as_the_cli_would(
        #[case] container: Value,
        #[case] address: &str,
        #[case] id: Option<&str>,
        #[case] submission: Value,
        #[case] flags: (bool, bool, bool, bool),
    ) {
        let submitter = Submitter::of(&container).unwrap();
        assert_eq!(submitter.address, address);
        assert_eq!(submitter.submission_id.as_deref(), id);
        assert_eq!(submitter.submission, submission);
        let found = (submitter.waits_for_gcs, submitter.checks_first, submitter.follows, submitter.fails_when_failed);
        assert_eq!(found, flags);
    }

    /// The commands the operator builds (`crate::build::submitter`) read as the dedup command they are.
    #[rstest]
    #[case::k8s_job_mode("K8sJobMode", "http://job-raycluster-head-svc.ns.svc.cluster.local:8265", false)]
    #[case::sidecar_mode("SidecarMode", "http://127.0.0.1:8265", true)]
    fn the_operators_dedup_commands_are_read_whole(#[case] mode: &str, #[case] address: &str, #[case] waits: bool) {
        let job: crate::api::RayJob = serde_json::from_value(json!({
            "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "job", "namespace": "ns", "uid": "u"},
            "spec": {
                "submissionMode": mode,
                "entrypoint": "python -c \"print('hi')\"",
                "runtimeEnvYAML": "pip: [\"requests\"]",
                "entrypointNumCpus": 1.5,
                "rayClusterSpec": {"rayVersion": "2.46.0", "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.46.0"}]}}}},
            }
        }))
        .unwrap();
        let spec = job.spec.ray_cluster_spec.clone().unwrap();
        let container = match mode {
            "K8sJobMode" => {
                let built = crate::build::submitter::submitter_job(&job, &spec, "job-abcde", &address[7..]).unwrap();
                serde_json::to_value(&built.spec.unwrap().template.spec.unwrap().containers[0]).unwrap()
            }
            _ => serde_json::to_value(
                crate::build::submitter::sidecar_submitter_container(&job, &spec, "job-abcde").unwrap(),
            )
            .unwrap(),
        };
        let submitter = Submitter::of(&container).unwrap();
        let expected = Submitter {
            address: address.to_string(),
            submission_id: Some("job-abcde".to_string()),
            submission: json!({
                "entrypoint": "python -c \"print('hi')\"",
                "submission_id": "job-abcde",
                "runtime_env": {"pip": ["requests"]},
                "entrypoint_num_cpus": 1.5,
            }),
            waits_for_gcs: waits,
            checks_first: true,
            follows: true,
            fails_when_failed: true,
        };
        assert_eq!(submitter, expected);
    }

    #[rstest]
    #[case::image_entrypoint(json!({"name": "c"}))]
    #[case::ray_start(json!({"name": "c", "command": ["/bin/bash", "-c", "ray start --head --block"]}))]
    #[case::unbalanced_quotes(bash("ray job submit -- echo \"oops", json!([])))]
    fn other_containers_are_no_submitters(#[case] container: Value) {
        assert_eq!(Submitter::of(&container), None);
    }

    #[test]
    fn expansion_leaves_unknown_names() {
        let env = [("A".to_string(), "1".to_string())].into_iter().collect();
        assert_eq!(expand("$A ${A}x $B ${B} $", &env), "1 1x $B ${B} $");
    }
}
