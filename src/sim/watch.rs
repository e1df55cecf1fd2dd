//! Watch streams: JSON lines of WatchEvents, replayed from the store's history after a cursor, filtered by
//! namespace and selectors, with BOOKMARKs and a `410 Gone` ERROR event when the history no longer reaches back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use super::error::ApiError;
use super::faults::{self, Dice};
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Change, ChangeKind, WatchPoll, WatchStart};
use super::table::Rendering;

/// Everything a watch request asked for.
pub struct WatchPlan {
    pub resource: ResourceType,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// Where the store says the watch starts, or why it cannot (sent as an ERROR event, as the API server does).
    pub start: Result<WatchStart, ApiError>,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: the initial events end with a BOOKMARK marked `k8s.io/initial-events-end`.
    pub initial_events_end: bool,
    pub timeout: Duration,
    /// How events carry their objects (`as=Table` for `kubectl get -w`).
    pub rendering: Rendering,
}

struct Watch {
    shared: Arc<Shared>,
    /// Draws for this watch's faults.
    dice: Dice,
    /// An event held back by the reorder fault, sent after the next one.
    held: Option<Vec<u8>>,
    /// Events sent, for the forced-410 fault.
    sent: usize,
    changed: tokio::sync::watch::Receiver<u64>,
    plan: WatchPlan,
    cursor: u64,
    opening: VecDeque<Bytes>,
    deadline: Instant,
    next_bookmark: Instant,
    bookmark_due: bool,
    finished: bool,
}

/// The body of a watch response.
pub fn stream(shared: Arc<Shared>, mut plan: WatchPlan) -> impl Stream<Item = Bytes> + Send {
    let now = Instant::now();
    let interval = shared.bookmark_interval;
    let changed = shared.subscribe();
    let mut opening = VecDeque::new();
    let start = std::mem::replace(&mut plan.start, Err(ApiError::internal("taken")));
    let time = shared.read(|store| store.now());
    let (cursor, finished_after_opening) = match start {
        Ok(start) => {
            let added: Vec<u8> = start
                .initial
                .iter()
                .flat_map(|object| line("ADDED", &plan.rendering.one(&plan.resource, &plan.version, object, time)))
                .collect();
            if !added.is_empty() {
                opening.push_back(Bytes::from(added));
            }
            if plan.initial_events_end && plan.bookmarks {
                opening.push_back(bookmark(&plan.resource, &plan.version, start.cursor, true));
            }
            (start.cursor, false)
        }
        Err(error) => {
            opening.push_back(Bytes::from(line("ERROR", &error.status())));
            (0, true)
        }
    };
    let rank = shared.watches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dice = shared.faults.dice(faults::WATCHES, rank);
    let watch = Watch {
        dice,
        held: None,
        sent: 0,
        shared,
        changed,
        cursor,
        opening,
        deadline: now + plan.timeout,
        next_bookmark: now + interval,
        plan,
        bookmark_due: false,
        finished: finished_after_opening,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        let chunk = watch.next_chunk().await?;
        Some((chunk, watch))
    })
}

impl Watch {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.opening.pop_front() {
            return Some(chunk);
        }
        if self.finished {
            return None;
        }
        loop {
            let id = self.plan.resource.id();
            let cursor = self.cursor;
            let (poll, current) =
                self.shared.read(|store| (store.changes_since(&id, cursor), store.resource_version()));
            match poll {
                WatchPoll::Closed => return None,
                WatchPoll::Expired { oldest } => {
                    self.finished = true;
                    let error = ApiError::expired(format!("too old resource version: {cursor} ({oldest})"));
                    return Some(Bytes::from(line("ERROR", &error.status())));
                }
                WatchPoll::Changes { changes, cursor } => {
                    self.cursor = cursor;
                    let events = self.render(&changes);
                    if let Some(chunk) = self.with_faults(events, current).await {
                        return Some(chunk);
                    }
                }
            }
            if self.bookmark_due {
                self.bookmark_due = false;
                self.cursor = self.cursor.max(current);
                return Some(bookmark(&self.plan.resource, &self.plan.version, self.cursor, false));
            }
            if Instant::now() >= self.deadline {
                self.finished = true;
                return None;
            }
            let wake = if self.plan.bookmarks { self.deadline.min(self.next_bookmark) } else { self.deadline };
            tokio::select! {
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if self.plan.bookmarks && now >= self.next_bookmark {
                        self.bookmark_due = true;
                        self.next_bookmark = now + self.shared.bookmark_interval;
                    }
                }
            }
        }
    }

    fn in_scope(&self, object: &Value) -> bool {
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        self.plan.namespace.as_deref().is_none_or(|wanted| wanted == namespace)
            && self.plan.labels.matches(object)
            && self.plan.fields.matches(object)
    }

    /// The events a filtered watch sees: an object that starts matching is ADDED, one that stops matching is
    /// DELETED (in its last matching state, at the change's resourceVersion).
    /// The events as the fault knobs let them through: some lost, some swapped with the next, all late, and the
    /// watch cut with 410 after so many. `None` when nothing is left to send.
    async fn with_faults(&mut self, events: Vec<Vec<u8>>, current: u64) -> Option<Bytes> {
        let faults = &self.shared.faults;
        if !faults.watch_faults() {
            return (!events.is_empty()).then(|| Bytes::from(events.concat()));
        }
        let mut out = Vec::new();
        for event in events {
            if self.dice.chance(faults.drop_watch_events) {
                continue;
            }
            if let Some(held) = self.held.take() {
                out.push(event);
                out.push(held);
            } else if self.dice.chance(faults.reorder_watch_events) {
                self.held = Some(event);
            } else {
                out.push(event);
            }
        }
        if let Some(limit) = faults.expire_watches_after
            && self.sent + out.len() >= limit
        {
            out.truncate(limit - self.sent);
            self.finished = true;
            let error = ApiError::expired(format!("too old resource version: {} ({current})", self.cursor));
            out.push(line("ERROR", &error.status()));
        }
        if out.is_empty() {
            return None;
        }
        self.sent += out.len();
        if !faults.delay_watch_events.is_zero() {
            tokio::time::sleep(faults.delay_watch_events).await;
        }
        Some(Bytes::from(out.concat()))
    }

    fn render(&self, changes: &[Change]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let now = self.shared.read(|store| store.now());
        let present = |object: &Value| self.plan.rendering.one(&self.plan.resource, &self.plan.version, object, now);
        for change in changes {
            let now = self.in_scope(&change.object);
            let before = change.previous.as_deref().is_some_and(|p| self.in_scope(p));
            match (change.kind, before, now) {
                (ChangeKind::Added, _, true) => out.push(line("ADDED", &present(&change.object))),
                (ChangeKind::Deleted, _, true) => out.push(line("DELETED", &present(&change.object))),
                (ChangeKind::Modified, true, true) => out.push(line("MODIFIED", &present(&change.object))),
                (ChangeKind::Modified, false, true) => out.push(line("ADDED", &present(&change.object))),
                (ChangeKind::Modified, true, false) => {
                    let mut last = change.previous.as_deref().map(present).unwrap_or(Value::Null);
                    last["metadata"]["resourceVersion"] = json!(change.resource_version.to_string());
                    out.push(line("DELETED", &last));
                }
                _ => {}
            }
        }
        out
    }
}

/// The object as served at `version` (custom resources of several versions are stored once, without conversion).
pub fn present(resource: &ResourceType, version: &str, object: &Value) -> Value {
    let mut copy = object.clone();
    copy["apiVersion"] = json!(resource.api_version(version));
    copy
}

fn line(kind: &str, object: &Value) -> Vec<u8> {
    let mut out = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
    out.extend(serde_json::to_vec(object).unwrap_or_default());
    out.extend(b"}\n");
    out
}

fn bookmark(resource: &ResourceType, version: &str, resource_version: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": resource_version.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({"kind": resource.kind, "apiVersion": resource.api_version(version), "metadata": metadata});
    Bytes::from(line("BOOKMARK", &object))
}
