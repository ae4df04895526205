//! `struct mg_event` (bpf/include/event.h), as the ring buffer delivers it.

pub(crate) use crate::backend::abi::{
    CMDLINE_LEN, COMM_LEN, KIND_CONNECT, KIND_DEVICE, KIND_ESCAPE, KIND_EXEC, KIND_STRATUM,
    PATH_LEN, PROC_CMDLINE, PROC_PARENT,
};

/// Mirror of `struct mg_event`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct RawEvent {
    pub boot_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub policy_id: u32,
    pub rule_idx: u32,
    pub kind: u8,
    pub action: u8,
    pub requested: u8,
    pub family: u8,
    pub port: u16,
    pub protocol: u8,
    pub _pad0: u8,
    pub addr: [u8; 16],
    pub comm: [u8; COMM_LEN],
    pub path: [u8; PATH_LEN],
    pub ppid: u32,
    pub args_len: u32,
    pub proc_src: u8,
    pub _pad1: [u8; 3],
    pub pname: [u8; COMM_LEN],
    pub cmdline: [u8; CMDLINE_LEN],
}

impl RawEvent {
    /// Copies a record out of ring-buffer bytes; `None` if too short.
    pub fn read(bytes: &[u8]) -> Option<RawEvent> {
        if bytes.len() < std::mem::size_of::<RawEvent>() {
            return None;
        }
        // SAFETY: length checked; RawEvent is plain data, any bit pattern is
        // valid; the ring buffer gives no alignment guarantee we rely on.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawEvent>()) })
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::RawEvent;
    use crate::backend::skel::probe::types::mg_event as C;

    #[test]
    fn raw_event_matches_the_c_header() {
        assert_eq!(size_of::<RawEvent>(), size_of::<C>());
        macro_rules! same {
            ($($f:ident),*) => {$(
                assert_eq!(offset_of!(RawEvent, $f), offset_of!(C, $f), stringify!($f));
            )*};
        }
        same!(
            boot_ns, cgroup_id, pid, tgid, uid, policy_id, rule_idx, kind, action, requested,
            family, port, protocol, addr, comm, path, ppid, args_len, proc_src, pname, cmdline
        );
    }

    #[test]
    fn the_record_stays_small() {
        // 336 bytes before ppid/pname/cmdline; a 1 MiB ring holds ~1680 of
        // these (8-byte header each).
        assert_eq!(size_of::<RawEvent>(), 616);
    }

    #[test]
    fn public_constants_follow_the_c_limits() {
        use crate::backend::abi::ARGV_MAX;
        assert!(crate::events::OVERLONG_ARGV.contains(&ARGV_MAX.to_string()));
        // A comm (15 bytes), a space, and the argv bytes an event carries.
        assert_eq!(
            crate::events::CMDLINE_CAPACITY,
            super::COMM_LEN + super::CMDLINE_LEN
        );
    }

    #[test]
    fn short_records_are_rejected() {
        assert!(RawEvent::read(&[0u8; 10]).is_none());
        assert!(RawEvent::read(&[0u8; size_of::<RawEvent>()]).is_some());
    }
}
