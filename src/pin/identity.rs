//! What makes two loaded programs the same enforcement: the same code (the
//! kernel's tag, computed over the instructions with map references
//! cleared), the same maps where they hold state (the instance's pinned
//! maps, by id; any other map by its shape, marked as not pinned: per-CPU
//! scratch space each load makes anew), and the same read-only
//! configuration (`.rodata` contents). An adopted link is kept only when its program is
//! the same as the one this process loaded; otherwise it is replaced.

use std::{
    collections::{hash_map::DefaultHasher, HashSet},
    hash::{Hash, Hasher},
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use libbpf_rs::libbpf_sys as sys;

/// More map references than any minerguard program has.
const MAX_MAPS: usize = 64;

fn owned(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor libbpf just returned to this function.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The identity of the program behind `fd`, given the ids of the maps the
/// instance pins.
pub(crate) fn of_prog(fd: BorrowedFd<'_>, pinned: &HashSet<u32>) -> io::Result<u64> {
    let mut ids = [0u32; MAX_MAPS];
    // SAFETY: zeroed POD the kernel fills; map_ids points at `ids`, which
    // outlives the call, with its length in nr_map_ids.
    let mut info: sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    info.nr_map_ids = MAX_MAPS as u32;
    info.map_ids = ids.as_mut_ptr() as u64;
    let mut len = std::mem::size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: see above.
    let rc = unsafe { sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    let mut h = DefaultHasher::new();
    info.tag.hash(&mut h);
    info.type_.hash(&mut h);
    let n = (info.nr_map_ids as usize).min(MAX_MAPS);
    let mut maps: Vec<(u32, Vec<u8>)> = Vec::with_capacity(n);
    for id in &ids[..n] {
        maps.push(map_part(*id, pinned)?);
    }
    maps.sort();
    maps.hash(&mut h);
    Ok(h.finish())
}

/// The identity of the program a pinned link runs.
pub(crate) fn of_link(link: &libbpf_rs::Link, pinned: &HashSet<u32>) -> io::Result<u64> {
    let info = link.info().map_err(|e| io::Error::other(e.to_string()))?;
    // SAFETY: plain bpf() call.
    let fd = owned(unsafe { sys::bpf_prog_get_fd_by_id(info.prog_id) })?;
    use std::os::fd::AsFd;
    of_prog(fd.as_fd(), pinned)
}

/// The kernel's description of map `fd`.
pub(crate) fn map_info(fd: BorrowedFd<'_>) -> io::Result<sys::bpf_map_info> {
    // SAFETY: zeroed POD the kernel fills.
    let mut info: sys::bpf_map_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<sys::bpf_map_info>() as u32;
    // SAFETY: see above.
    let rc = unsafe { sys::bpf_map_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(info)
}

/// What of map `id` belongs to a program's identity: a pinned map by its
/// id; an object's `.rodata` by its contents (each load has its own copy);
/// other internal maps (`.bss`, `.data`: state, not configuration) by
/// nothing; any other map by its shape.
fn map_part(id: u32, pinned: &HashSet<u32>) -> io::Result<(u32, Vec<u8>)> {
    if pinned.contains(&id) {
        return Ok((id, Vec::new()));
    }
    // SAFETY: plain bpf() call.
    let fd = owned(unsafe { sys::bpf_map_get_fd_by_id(id) })?;
    use std::os::fd::AsFd;
    let info = map_info(fd.as_fd())?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    if name.ends_with(b".rodata") {
        let mut value = vec![0u8; info.value_size as usize];
        let key = 0u32;
        // SAFETY: key and value buffers of the map's sizes.
        let rc = unsafe {
            sys::bpf_map_lookup_elem(
                fd.as_raw_fd(),
                (&key as *const u32).cast(),
                value.as_mut_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok((0, value));
    }
    if name.contains(&b'.') {
        return Ok((0, Vec::new()));
    }
    let mut shape = name;
    for v in [
        info.type_,
        info.key_size,
        info.value_size,
        info.max_entries,
        info.map_flags,
    ] {
        shape.extend_from_slice(&v.to_ne_bytes());
    }
    Ok((0, shape))
}
