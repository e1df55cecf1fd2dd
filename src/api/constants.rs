//! Names KubeRay v1.3.0 puts on the wire: labels, annotations, condition types, reasons, event reasons and the
//! operator's defaults (`utils/constant.go`). Kept in one place so that every module spells them alike.

/// The KubeRay release whose behaviour this operator follows; it is stamped into env and annotations.
pub const KUBERAY_VERSION: &str = "v1.3.0";

/// API group and version of the three kinds.
pub const GROUP: &str = "ray.io";
pub const VERSION: &str = "v1";

// Labels.
pub const RAY_CLUSTER_LABEL: &str = "ray.io/cluster";
pub const RAY_NODE_TYPE_LABEL: &str = "ray.io/node-type";
pub const RAY_NODE_GROUP_LABEL: &str = "ray.io/group";
pub const RAY_NODE_LABEL: &str = "ray.io/is-ray-node";
pub const RAY_ID_LABEL: &str = "ray.io/identifier";
pub const RAY_CLUSTER_SERVING_SERVICE_LABEL: &str = "ray.io/serve";
pub const RAY_ORIGINATED_FROM_CR_NAME_LABEL: &str = "ray.io/originated-from-cr-name";
pub const RAY_ORIGINATED_FROM_CRD_LABEL: &str = "ray.io/originated-from-crd";
pub const K8S_APP_NAME_LABEL: &str = "app.kubernetes.io/name";
pub const K8S_CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";
pub const APPLICATION_NAME: &str = "kuberay";
pub const COMPONENT_NAME: &str = "kuberay-operator";

// Annotations.
pub const RAY_FT_ENABLED_ANNOTATION: &str = "ray.io/ft-enabled";
pub const RAY_EXTERNAL_STORAGE_NS_ANNOTATION: &str = "ray.io/external-storage-namespace";
pub const RAY_OVERWRITE_CONTAINER_CMD_ANNOTATION: &str = "ray.io/overwrite-container-cmd";
pub const ENABLE_SERVE_SERVICE_ANNOTATION: &str = "ray.io/enable-serve-service";
pub const HASH_WITHOUT_REPLICAS_AND_WORKERS_TO_DELETE_ANNOTATION: &str =
    "ray.io/hash-without-replicas-and-workers-to-delete";
pub const NUM_WORKER_GROUPS_ANNOTATION: &str = "ray.io/num-worker-groups";
pub const KUBERAY_VERSION_ANNOTATION: &str = "ray.io/kuberay-version";
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// DEVIATIONS 9: seconds after `deletionTimestamp` after which the Redis cleanup finalizer is dropped.
pub const GCS_FT_DELETION_TIMEOUT_ANNOTATION: &str = "ray.io/gcs-ft-deletion-timeout";
pub const DEFAULT_GCS_FT_DELETION_TIMEOUT_SECONDS: i64 = 300;

// Finalizers.
pub const GCS_FT_REDIS_CLEANUP_FINALIZER: &str = "ray.io/gcs-ft-redis-cleanup-finalizer";
pub const RAYJOB_STOP_JOB_FINALIZER: &str = "ray.io/rayjob-finalizer";

// Values of `ray.io/node-type`.
pub const NODE_TYPE_HEAD: &str = "head";
pub const NODE_TYPE_WORKER: &str = "worker";
pub const NODE_TYPE_REDIS_CLEANUP: &str = "redis-cleanup";
pub const HEAD_GROUP_NAME: &str = "headgroup";

/// `spec.managedBy` value that means "this operator".
pub const KUBERAY_MANAGED_BY: &str = "ray.io/kuberay-operator";
pub const MULTIKUEUE_MANAGED_BY: &str = "kueue.x-k8s.io/multikueue";

// Ports.
pub const DEFAULT_GCS_SERVER_PORT: i32 = 6379;
pub const DEFAULT_DASHBOARD_PORT: i32 = 8265;
pub const DEFAULT_CLIENT_PORT: i32 = 10001;
pub const DEFAULT_METRICS_PORT: i32 = 8080;
pub const DEFAULT_SERVING_PORT: i32 = 8000;
pub const DEFAULT_DASHBOARD_AGENT_LISTEN_PORT: i32 = 52365;
pub const GCS_SERVER_PORT_NAME: &str = "gcs-server";
pub const DASHBOARD_PORT_NAME: &str = "dashboard";
pub const CLIENT_PORT_NAME: &str = "client";
pub const METRICS_PORT_NAME: &str = "metrics";
pub const SERVING_PORT_NAME: &str = "serve";

// RayCluster condition types and reasons (§2.3).
pub const RAY_CLUSTER_PROVISIONED: &str = "RayClusterProvisioned";
pub const HEAD_POD_READY: &str = "HeadPodReady";
pub const RAY_CLUSTER_REPLICA_FAILURE: &str = "ReplicaFailure";
pub const RAY_CLUSTER_SUSPENDING: &str = "RayClusterSuspending";
pub const RAY_CLUSTER_SUSPENDED: &str = "RayClusterSuspended";
pub const ALL_POD_RUNNING_AND_READY_FIRST_TIME: &str = "AllPodRunningAndReadyFirstTime";
pub const RAY_CLUSTER_PODS_PROVISIONING: &str = "RayClusterPodsProvisioning";
pub const HEAD_POD_NOT_FOUND: &str = "HeadPodNotFound";
pub const HEAD_POD_RUNNING_AND_READY: &str = "HeadPodRunningAndReady";
pub const UNKNOWN_REASON: &str = "Unknown";
pub const FAILED_DELETE_ALL_PODS: &str = "FailedDeleteAllPods";
pub const FAILED_DELETE_HEAD_POD: &str = "FailedDeleteHeadPod";
pub const FAILED_CREATE_HEAD_POD: &str = "FailedCreateHeadPod";
pub const FAILED_DELETE_WORKER_POD: &str = "FailedDeleteWorkerPod";
pub const FAILED_CREATE_WORKER_POD: &str = "FailedCreateWorkerPod";

// RayService condition types and reasons (§4.3).
pub const RAY_SERVICE_READY: &str = "Ready";
pub const UPGRADE_IN_PROGRESS: &str = "UpgradeInProgress";
pub const RAY_SERVICE_INITIALIZING: &str = "Initializing";
pub const ZERO_SERVE_ENDPOINTS: &str = "ZeroServeEndpoints";
pub const NON_ZERO_SERVE_ENDPOINTS: &str = "NonZeroServeEndpoints";
pub const BOTH_ACTIVE_PENDING_CLUSTERS_EXIST: &str = "BothActivePendingClustersExist";
pub const NO_PENDING_CLUSTER: &str = "NoPendingCluster";
pub const NO_ACTIVE_CLUSTER: &str = "NoActiveCluster";

// Event reasons (§2.3, §3, §4).
pub const CREATED_HEAD_POD: &str = "CreatedHeadPod";
pub const FAILED_TO_CREATE_HEAD_POD: &str = "FailedToCreateHeadPod";
pub const DELETED_HEAD_POD: &str = "DeletedHeadPod";
pub const FAILED_TO_DELETE_HEAD_POD: &str = "FailedToDeleteHeadPod";
pub const CREATED_WORKER_POD: &str = "CreatedWorkerPod";
pub const FAILED_TO_CREATE_WORKER_POD: &str = "FailedToCreateWorkerPod";
pub const DELETED_WORKER_POD: &str = "DeletedWorkerPod";
pub const FAILED_TO_DELETE_WORKER_POD: &str = "FailedToDeleteWorkerPod";
pub const FAILED_TO_DELETE_WORKER_POD_COLLECTION: &str = "FailedToDeleteWorkerPodCollection";
pub const DELETED_POD: &str = "DeletedPod";
pub const FAILED_TO_DELETE_POD_COLLECTION: &str = "FailedToDeletePodCollection";
pub const CREATED_SERVICE: &str = "CreatedService";
pub const FAILED_TO_CREATE_SERVICE: &str = "FailedToCreateService";
pub const CREATED_INGRESS: &str = "CreatedIngress";
pub const CREATED_SERVICE_ACCOUNT: &str = "CreatedServiceAccount";
pub const AUTOSCALER_SERVICE_ACCOUNT_NOT_FOUND: &str = "AutoscalerServiceAccountNotFound";
pub const CREATED_ROLE: &str = "CreatedRole";
pub const CREATED_ROLE_BINDING: &str = "CreatedRoleBinding";
pub const CREATED_REDIS_CLEANUP_JOB: &str = "CreatedRedisCleanupJob";
pub const FAILED_TO_CREATE_REDIS_CLEANUP_JOB: &str = "FailedToCreateRedisCleanupJob";
pub const INVALID_RAY_CLUSTER_SPEC: &str = "InvalidRayClusterSpec";
pub const INVALID_RAY_CLUSTER_STATUS: &str = "InvalidRayClusterStatus";
pub const INVALID_RAY_JOB_SPEC: &str = "InvalidRayJobSpec";
pub const INVALID_RAY_JOB_STATUS: &str = "InvalidRayJobStatus";
pub const INVALID_RAY_SERVICE_SPEC: &str = "InvalidRayServiceSpec";
pub const CREATED_RAY_CLUSTER: &str = "CreatedRayCluster";
pub const FAILED_TO_CREATE_RAY_CLUSTER: &str = "FailedToCreateRayCluster";
pub const DELETED_RAY_CLUSTER: &str = "DeletedRayCluster";
pub const UPDATED_RAY_CLUSTER: &str = "UpdatedRayCluster";
pub const CREATED_RAY_JOB_SUBMITTER: &str = "CreatedRayJobSubmitter";
pub const FAILED_TO_CREATE_RAY_JOB_SUBMITTER: &str = "FailedToCreateRayJobSubmitter";
pub const UPDATED_SERVE_APPLICATIONS: &str = "UpdatedServeApplications";
pub const FAILED_TO_UPDATE_SERVE_APPLICATIONS: &str = "FailedToUpdateServeApplications";

// Container names.
pub const RAY_JOB_SUBMITTER_CONTAINER: &str = "ray-job-submitter";
pub const AUTOSCALER_CONTAINER: &str = "autoscaler";
pub const WAIT_GCS_READY_CONTAINER: &str = "wait-gcs-ready";

// Environment variable names the operator reads or injects.
pub const RAY_REDIS_ADDRESS: &str = "RAY_REDIS_ADDRESS";
pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";
pub const REDIS_USERNAME: &str = "REDIS_USERNAME";
pub const RAY_EXTERNAL_STORAGE_NS: &str = "RAY_external_storage_namespace";
pub const RAY_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S: &str = "RAY_gcs_rpc_server_reconnect_timeout_s";
pub const RAY_ENABLE_AUTOSCALER_V2: &str = "RAY_enable_autoscaler_v2";

/// The CPU, memory and resource names the Pod builder reads.
pub const GPU_SUFFIX: &str = "gpu";
pub const TPU_RESOURCE: &str = "google.com/tpu";
pub const NEURON_CORE_RESOURCE: &str = "aws.amazon.com/neuroncore";
