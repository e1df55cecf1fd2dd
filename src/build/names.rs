//! KubeRay's naming rules (`utils/util.go`): CheckName, CheckLabel, Pod `generateName` prefixes, the names of the
//! objects a RayCluster owns, and the deterministic stand-in for the 5 random characters KubeRay draws.

use sha1::{Digest, Sha1};

use crate::api::RayCluster;
use crate::api::constants::{NODE_TYPE_HEAD, NODE_TYPE_WORKER};

/// The 27 characters of `k8s.io/apimachinery/pkg/util/rand.String`.
const RAND_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// KubeRay's CheckName: keep the last 50 characters, then replace a leading digit, and then a leading punctuation
/// character, with `r`.
pub fn check_name(name: &str) -> String {
    let kept = keep_last_chars(name, 50);
    let kept = replace_first_if(&kept, |c| c.is_ascii_digit());
    replace_first_if(&kept, |c| c.is_ascii_punctuation())
}

/// KubeRay's CheckLabel: keep the last 63 characters, then replace a leading punctuation character with `r`.
pub fn check_label(value: &str) -> String {
    replace_first_if(&keep_last_chars(value, 63), |c| c.is_ascii_punctuation())
}

fn keep_last_chars(s: &str, max: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(max)).collect()
}

fn replace_first_if(s: &str, test: impl Fn(char) -> bool) -> String {
    match s.chars().next() {
        Some(first) if test(first) => format!("r{}", &s[first.len_utf8()..]),
        _ => s.to_string(),
    }
}

/// `generateName` of a Pod: the first 50 characters of the prefix, lower-cased, then `-head-` or `-worker-`.
pub fn pod_generate_name(prefix: &str, node_type: &str) -> String {
    let kept: String = prefix.chars().take(50).collect();
    format!("{kept}-{node_type}-").to_lowercase()
}

pub fn head_pod_generate_name(cluster_name: &str) -> String {
    pod_generate_name(cluster_name, NODE_TYPE_HEAD)
}

pub fn worker_pod_generate_name(cluster_name: &str, group_name: &str) -> String {
    pod_generate_name(&format!("{cluster_name}-{group_name}"), NODE_TYPE_WORKER)
}

/// Five characters from KubeRay's random alphabet, derived from `seed` so that the same seed always gives the same
/// characters (KubeRay draws them at random; a pure machine cannot).
pub fn rand5(seed: &str) -> String {
    Sha1::digest(seed.as_bytes())
        .iter()
        .take(5)
        .map(|byte| RAND_ALPHABET[usize::from(*byte) % RAND_ALPHABET.len()] as char)
        .collect()
}

/// The head Service's name: the user's `headService.metadata.name`, else CheckName(`<c>-head-svc`).
pub fn head_service_name(cluster: &RayCluster) -> String {
    cluster
        .spec
        .head_group_spec
        .head_service
        .as_ref()
        .and_then(|service| service.metadata.name.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| check_name(&format!("{}-head-svc", cluster_name(cluster))))
}

/// The cluster's name, or its `generateName` when it has no name yet (a manifest read from a file).
pub fn cluster_name(cluster: &RayCluster) -> &str {
    cluster.metadata.name.as_deref().or(cluster.metadata.generate_name.as_deref()).unwrap_or_default()
}

pub fn serve_service_name(cluster_name: &str) -> String {
    check_name(&format!("{cluster_name}-serve-svc"))
}

pub fn headless_worker_service_name(cluster_name: &str) -> String {
    check_name(&format!("{cluster_name}-headless-worker-svc"))
}

pub fn ingress_name(cluster_name: &str) -> String {
    check_name(&format!("{cluster_name}-head-ingress"))
}

/// TrimJobName: the Redis cleanup Job's name follows CheckLabel (at most 63 characters).
pub fn redis_cleanup_job_name(cluster_name: &str) -> String {
    check_label(&format!("{cluster_name}-redis-cleanup"))
}

/// `<svc>.<ns>.svc.<domain>`.
pub fn service_fqdn(service_name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("{service_name}.{namespace}.svc.{cluster_domain}")
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::short_name_kept("raycluster-sample", "raycluster-sample")]
    #[case::leading_digit("1abc", "rabc")]
    #[case::leading_punctuation("-abc", "rabc")]
    #[case::keeps_last_50(&format!("{}{}", "x".repeat(10), "a".repeat(50)), &"a".repeat(50))]
    #[case::digit_after_trim(&format!("{}9{}", "x".repeat(10), "a".repeat(49)), &format!("r{}", "a".repeat(49)))]
    fn check_name_follows_kuberay(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(check_name(input), expected);
    }

    #[rstest]
    #[case::short("abc-head", "abc-head")]
    #[case::leading_digit_kept("1abc", "1abc")]
    #[case::leading_punctuation(".abc", "rabc")]
    #[case::keeps_last_63(&format!("{}{}", "x".repeat(7), "b".repeat(63)), &"b".repeat(63))]
    fn check_label_follows_kuberay(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(check_label(input), expected);
    }

    #[rstest]
    #[case::head("raycluster-kuberay", "head", "raycluster-kuberay-head-")]
    #[case::lower_cased("RayCluster", "head", "raycluster-head-")]
    #[case::first_50_kept(&"a".repeat(60), "worker", &format!("{}-worker-", "a".repeat(50)))]
    fn pod_generate_name_truncates_and_lowercases(#[case] prefix: &str, #[case] node: &str, #[case] expected: &str) {
        assert_eq!(pod_generate_name(prefix, node), expected);
    }

    #[test]
    fn rand5_is_deterministic_and_uses_kuberays_alphabet() {
        let a = rand5("uid-1/attempt-0");
        assert_eq!(a, rand5("uid-1/attempt-0"));
        assert_ne!(a, rand5("uid-1/attempt-1"));
        assert_eq!(a.len(), 5);
        assert!(a.bytes().all(|b| RAND_ALPHABET.contains(&b)));
    }
}
