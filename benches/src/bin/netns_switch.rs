//! `netns_switch`: a learning Ethernet switch in user space that holds every frame for
//! a fixed delay before it forwards it: the "network" of the cross-host harness
//! (`benches/netns/`) on kernels without `netem` (the qdisc that usually adds delay).
//!
//! ```text
//! netns_switch --delay-us 50 PORT [PORT ...]     # run inside the switch namespace
//! ```
//! Each PORT is the switch-side end of a host's veth pair. Frames are read and written
//! with AF_PACKET and `PACKET_VNET_HDR`, so the kernel's segmentation offload and
//! partial checksums survive the trip (a 64 KiB TCP burst is one frame here, as on a
//! NIC with TSO). Source MACs are learned per port; unknown destinations are flooded.
//! Per output port one thread releases frames in arrival order once `arrival + delay`
//! has passed, so the delay is added once per host-to-host crossing (one "hop").
//! Rate limits are the kernel's job (`tc tbf` on the hosts), not this program's.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: netns_switch --delay-us MICROS PORT [PORT ...]";
/// virtio_net_hdr (without num_buffers): what PACKET_VNET_HDR puts before each frame.
const VNET_HDR: usize = 10;
/// The largest GSO frame the kernel hands over, with its header.
const MAX_FRAME: usize = 65536 + VNET_HDR + 64;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

struct Port {
    name: String,
    fd: libc::c_int,
}

fn open_port(name: &str) -> io::Result<Port> {
    let cname = CString::new(name).map_err(|_| io::Error::other("port name has a NUL"))?;
    // SAFETY: plain libc calls on a socket this function owns; every pointer passed
    // points at a live local of the size given.
    unsafe {
        let ifindex = libc::if_nametoindex(cname.as_ptr());
        if ifindex == 0 {
            return Err(io::Error::other(format!("no interface named {name}")));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        for opt in [PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING] {
            if libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                opt,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let buf: libc::c_int = 64 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &buf as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(Port {
            name: name.to_string(),
            fd,
        })
    }
}

type Mac = [u8; 6];
/// A frame (vnet header included) and when it may leave.
type Held = (Instant, Arc<Vec<u8>>);

/// Reads frames from port `me`, learns their source, and queues them on the output
/// ports they go to.
fn receive(
    me: usize,
    port: &Port,
    outs: &[Sender<Held>],
    macs: &RwLock<HashMap<Mac, usize>>,
    delay: Duration,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(port.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("netns_switch: receive on {}: {e}", port.name);
            return;
        }
        let n = n as usize;
        if n < VNET_HDR + 14 {
            continue;
        }
        let release = Instant::now() + delay;
        let eth = &buf[VNET_HDR..n];
        let dst: Mac = eth[0..6].try_into().expect("6 bytes");
        let src: Mac = eth[6..12].try_into().expect("6 bytes");
        if macs.read().expect("mac table").get(&src) != Some(&me) {
            macs.write().expect("mac table").insert(src, me);
        }
        let frame = Arc::new(buf[..n].to_vec());
        let to = if dst[0] & 1 == 0 {
            macs.read().expect("mac table").get(&dst).copied()
        } else {
            None
        };
        match to {
            Some(o) if o != me => {
                let _ = outs[o].send((release, frame));
            }
            Some(_) => {}
            None => {
                for (o, out) in outs.iter().enumerate() {
                    if o != me {
                        let _ = out.send((release, frame.clone()));
                    }
                }
            }
        }
    }
}

/// Sends each queued frame on `port` once its time has come.
fn release(port: &Port, queue: Receiver<Held>) {
    for (at, frame) in queue {
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        // SAFETY: sends frame.len() bytes from the frame's buffer.
        let rc = unsafe {
            libc::send(
                port.fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // A full queue drops the frame, as a switch would; TCP recovers.
            if e.raw_os_error() != Some(libc::ENOBUFS) && e.kind() != io::ErrorKind::WouldBlock {
                eprintln!("netns_switch: send on {}: {e}", port.name);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args[0] != "--delay-us" {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let micros: u64 = args[1].parse().unwrap_or_else(|_| {
        eprintln!(
            "netns_switch: --delay-us wants a whole number of microseconds, got {:?}",
            args[1]
        );
        std::process::exit(2)
    });
    let delay = Duration::from_micros(micros);
    // Sleeps end within a microsecond of their deadline instead of the default 50 µs
    // slack, which would be as large as the delay being emulated.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
    let ports: Vec<Arc<Port>> = args[2..]
        .iter()
        .map(|name| {
            open_port(name).map(Arc::new).unwrap_or_else(|e| {
                eprintln!("netns_switch: port {name}: {e}");
                std::process::exit(1)
            })
        })
        .collect();
    let macs = Arc::new(RwLock::new(HashMap::new()));
    let mut outs = Vec::new();
    let mut threads = Vec::new();
    for port in &ports {
        let (tx, rx) = channel::<Held>();
        outs.push(tx);
        let port = port.clone();
        threads.push(std::thread::spawn(move || release(&port, rx)));
    }
    let outs = Arc::new(outs);
    for (i, port) in ports.iter().enumerate() {
        let (port, outs, macs) = (port.clone(), outs.clone(), macs.clone());
        threads.push(std::thread::spawn(move || {
            receive(i, &port, &outs, &macs, delay)
        }));
    }
    eprintln!("netns_switch: {} ports, {micros} µs per hop", ports.len());
    for t in threads {
        let _ = t.join();
    }
}
