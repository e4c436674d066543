//! What must survive faults: crashes, killed servers, database and network
//! outages, a full disk, stale workers, and a soak.

mod crash;
mod delivery;
mod disk_full;
mod faults;
mod fencing;
mod network_faults;
mod soak;
