//! Volumes every Ray pod gets: `/dev/shm` sized from the container's
//! memory, and the shared Ray log directory.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, Volume, VolumeMount};

/// `/dev/shm` as memory, sized like the container's memory, so Ray's
/// object store is not capped by the runtime's 64 MB default.
pub(super) fn add_shared_memory(spec: &mut PodSpec) {
    let c = &spec.containers[0];
    if c.volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path == "/dev/shm")
    {
        return;
    }
    let res = c.resources.as_ref();
    let size = res
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .or_else(|| {
            res.and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("memory"))
        })
        .cloned();
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == "shared-mem") {
        volumes.push(Volume {
            name: "shared-mem".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: size,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    spec.containers[0]
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "shared-mem".into(),
            mount_path: "/dev/shm".into(),
            read_only: Some(false),
            ..Default::default()
        });
}

/// Ray's logs, shared between the Ray container and the autoscaler.
pub(super) fn add_ray_logs_volume(spec: &mut PodSpec) {
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == "ray-logs") {
        volumes.push(Volume {
            name: "ray-logs".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
    }
    for i in [0, spec.containers.len() - 1] {
        let mounts = spec.containers[i]
            .volume_mounts
            .get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.mount_path == "/tmp/ray") {
            mounts.push(VolumeMount {
                name: "ray-logs".into(),
                mount_path: "/tmp/ray".into(),
                ..Default::default()
            });
        }
    }
}
