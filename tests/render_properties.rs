//! Properties of `validate` and `render` over arbitrary specs: they never panic, and render is deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kuberay::api::document::RayObject;
use kuberay::api::raycluster::{
    AutoscalerOptions, AutoscalerVersion, GcsFaultToleranceOptions, HeadGroupSpec, RedisCredential, WorkerGroupSpec,
};
use kuberay::api::rayjob::RayJobSpec;
use kuberay::api::rayservice::{RayServiceSpec, RayServiceUpgradeStrategy};
use kuberay::api::{RayCluster, RayClusterSpec, RayJob, RayService, validation};
use kuberay::build::render;
use kuberay::config::{Feature, FeatureGates, OperatorConfig};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

/// Strings that are sometimes right, sometimes wrong, and sometimes hostile.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("K8sJobMode".to_string()),
        Just("HTTPMode".to_string()),
        Just("SidecarMode".to_string()),
        Just("{\"TPU\": 4}".to_string()),
        Just("redis://:secret@redis:6379".to_string()),
        Just("2.41.0".to_string()),
        "[a-z0-9:/{}\" .-]{0,12}",
    ]
    .boxed()
}

fn quantity() -> BoxedStrategy<Quantity> {
    prop_oneof![
        Just("1"),
        Just("500m"),
        Just("2Gi"),
        Just("1e3"),
        Just("-1"),
        Just("0"),
        Just("abc"),
        Just("99999999999999999999999"),
        Just(".5Ki"),
    ]
    .prop_map(|q| Quantity(q.to_string()))
    .boxed()
}

fn resources() -> BoxedStrategy<Option<ResourceRequirements>> {
    let names = prop_oneof![
        Just("cpu"),
        Just("memory"),
        Just("nvidia.com/gpu"),
        Just("google.com/tpu"),
        Just("aws.amazon.com/neuroncore")
    ];
    let list = || option::of(btree_map(names.clone().prop_map(str::to_string), quantity(), 0..4));
    option::of((list(), list()).prop_map(|(limits, requests)| ResourceRequirements {
        limits,
        requests,
        ..Default::default()
    }))
    .boxed()
}

fn container() -> BoxedStrategy<Container> {
    let env_names = prop_oneof![
        Just("RAY_REDIS_ADDRESS"),
        Just("REDIS_PASSWORD"),
        Just("REDIS_USERNAME"),
        Just("RAY_enable_autoscaler_v2"),
        Just("OTHER")
    ];
    (
        text(),
        resources(),
        option::of(vec((option::of(text()), 0..70000i32), 0..4)),
        option::of(vec((env_names, text()), 0..3)),
        option::of(vec(text(), 0..3)),
    )
        .prop_map(|(image, resources, ports, env, command)| Container {
            name: "ray".to_string(),
            image: Some(image),
            resources,
            ports: ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|(name, port)| ContainerPort { name, container_port: port, ..Default::default() })
                    .collect()
            }),
            env: env.map(|env| {
                env.into_iter()
                    .map(|(name, value)| EnvVar { name: name.to_string(), value: Some(value), ..Default::default() })
                    .collect()
            }),
            command,
            ..Default::default()
        })
        .boxed()
}

fn template() -> BoxedStrategy<PodTemplateSpec> {
    (vec(container(), 0..3), option::of(text()))
        .prop_map(|(containers, restart_policy)| PodTemplateSpec {
            spec: Some(PodSpec { containers, restart_policy, ..Default::default() }),
            ..Default::default()
        })
        .boxed()
}

fn params() -> BoxedStrategy<BTreeMap<String, String>> {
    let keys = prop_oneof![
        Just("num-cpus"),
        Just("resources"),
        Just("port"),
        Just("block"),
        Just("redis-password"),
        Just("log-color")
    ];
    btree_map(keys.prop_map(str::to_string), text(), 0..4).boxed()
}

fn replicas() -> BoxedStrategy<Option<i32>> {
    option::of(prop_oneof![-2..5i32, Just(i32::MAX), Just(i32::MIN)]).boxed()
}

fn group() -> BoxedStrategy<WorkerGroupSpec> {
    (text(), replicas(), replicas(), replicas(), -1..3i32, option::of(any::<bool>()), params(), template())
        .prop_map(
            |(group_name, replicas, min_replicas, max_replicas, num_of_hosts, suspend, ray_start_params, template)| {
                WorkerGroupSpec {
                    group_name,
                    // Keep the number of rendered Pods small; validation sees the extremes through min/max.
                    replicas: replicas.map(|r| r.clamp(-2, 4)),
                    min_replicas: min_replicas.map(|r| r.clamp(i32::MIN, 4)),
                    max_replicas,
                    num_of_hosts,
                    suspend,
                    ray_start_params,
                    template,
                    ..Default::default()
                }
            },
        )
        .boxed()
}

fn cluster_spec() -> BoxedStrategy<RayClusterSpec> {
    let gcs = option::of((text(), option::of(text()), option::of(text())).prop_map(|(address, password, ns)| {
        GcsFaultToleranceOptions {
            redis_address: address,
            redis_password: password.map(|value| RedisCredential { value: Some(value), value_from: None }),
            external_storage_namespace: ns,
            ..Default::default()
        }
    }));
    let version = option::of(prop_oneof![Just(AutoscalerVersion::V1), Just(AutoscalerVersion::V2)]);
    (
        (params(), template(), option::of(text()), option::of(any::<bool>())),
        vec(group(), 0..3),
        option::of(any::<bool>()),
        version,
        gcs,
        option::of(any::<bool>()),
        option::of(text()),
    )
        .prop_map(
            |(
                (head_params, head_template, service_type, ingress),
                groups,
                autoscaling,
                version,
                gcs,
                suspend,
                ray_version,
            )| {
                RayClusterSpec {
                    head_group_spec: HeadGroupSpec {
                        ray_start_params: head_params,
                        template: head_template,
                        service_type,
                        enable_ingress: ingress,
                        ..Default::default()
                    },
                    worker_group_specs: Some(groups),
                    enable_in_tree_autoscaling: autoscaling,
                    autoscaler_options: version
                        .map(|version| AutoscalerOptions { version: Some(version), ..Default::default() }),
                    gcs_fault_tolerance_options: gcs,
                    suspend,
                    ray_version,
                    ..Default::default()
                }
            },
        )
        .boxed()
}

fn annotations() -> BoxedStrategy<BTreeMap<String, String>> {
    let keys = prop_oneof![
        Just("ray.io/ft-enabled"),
        Just("ray.io/overwrite-container-cmd"),
        Just("ray.io/enable-serve-service"),
        Just("kubernetes.io/ingress.class"),
        Just("ray.io/external-storage-namespace")
    ];
    btree_map(keys.prop_map(str::to_string), text(), 0..3).boxed()
}

fn ray_object() -> BoxedStrategy<RayObject> {
    let cluster = (cluster_spec(), annotations()).prop_map(|(spec, annotations)| {
        let mut cluster = RayCluster::new("c", spec);
        cluster.metadata.annotations = Some(annotations);
        RayObject::Cluster(Box::new(cluster))
    });
    let job = (
        option::of(cluster_spec()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(any::<f32>()),
        option::of(btree_map(text(), text(), 0..2)),
        option::of(any::<bool>()),
        option::of(text()),
    )
        .prop_map(|(spec, mode, entrypoint, runtime_env, cpus, metadata, suspend, job_id)| {
            RayObject::Job(Box::new(RayJob::new(
                "j",
                RayJobSpec {
                    ray_cluster_spec: spec,
                    submission_mode: mode,
                    entrypoint,
                    runtime_env_yaml: runtime_env,
                    entrypoint_num_cpus: cpus,
                    metadata,
                    suspend,
                    job_id,
                    ..Default::default()
                },
            )))
        });
    let service = (option::of(cluster_spec()), option::of(text()), option::of(text())).prop_map(
        |(spec, strategy, serve_config)| {
            RayObject::Service(Box::new(RayService::new(
                "s",
                RayServiceSpec {
                    ray_cluster_config: spec,
                    upgrade_strategy: strategy.map(|type_| RayServiceUpgradeStrategy { type_: Some(type_) }),
                    serve_config_v2: serve_config,
                    ..Default::default()
                },
            )))
        },
    );
    prop_oneof![cluster.boxed(), job.boxed(), service.boxed()].boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn validate_and_render_never_panic_and_render_is_deterministic(object in ray_object(), gate in any::<bool>()) {
        let gates = FeatureGates::default().with(Feature::RayJobDeletionPolicy, gate);
        let problems = match &object {
            RayObject::Cluster(cluster) => validation::validate_ray_cluster(cluster, &gates),
            RayObject::Job(job) => validation::validate_ray_job(job, &gates),
            RayObject::Service(service) => validation::validate_ray_service(service, &gates),
        };
        prop_assert!(problems.iter().all(|problem| !problem.is_empty()));
        let config = OperatorConfig { feature_gates: gates, ..OperatorConfig::default() };
        let first = render::render(&object, &config, &[]).map_err(|e| e.to_string());
        let second = render::render(&object, &config, &[]).map_err(|e| e.to_string());
        prop_assert_eq!(first, second);
    }
}
