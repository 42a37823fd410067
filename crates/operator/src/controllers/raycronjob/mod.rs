//! The RayCronJob controller: not yet built (off in every configuration).

use super::Registration;

pub const REGISTRATION: Registration = Registration {
    name: "raycronjob",
    enabled: |_| false,
    run: |_, _| Box::pin(async {}),
};
