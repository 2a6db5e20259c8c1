//! smoltcp's `phy::Device` over a [`Net`]: one preallocated receive buffer
//! and one transmit buffer, so the hot path allocates nothing.

use crate::net::Net;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Receive buffer: larger than any frame a device hands over (a frame too
/// large for the buffer would stay queued on an in-memory link).
const RX_BUF: usize = 65536;

pub(crate) struct Phy {
    pub(crate) net: Net,
    rx: Vec<u8>,
    tx: Vec<u8>,
    mtu: usize,
}

impl Phy {
    pub(crate) fn new(net: Net) -> Phy {
        let mtu = net.cfg().mtu;
        Phy {
            net,
            rx: vec![0; RX_BUF.max(mtu + 18)],
            tx: vec![0; mtu + 14],
            mtu,
        }
    }
}

pub(crate) struct Rx<'a>(&'a [u8]);

pub(crate) struct Tx<'a> {
    net: &'a Net,
    buf: &'a mut [u8],
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buf.len());
        let frame = &mut self.buf[..len];
        let r = f(frame);
        if let Err(e) = self.net.write(frame) {
            // Like a lost frame: TCP retransmits it.
            log::debug!("mkernel stack: frame not sent: {e}");
        }
        r
    }
}

impl phy::Device for Phy {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        match self.net.try_read(&mut self.rx) {
            Ok(Some(n)) => Some((
                Rx(&self.rx[..n]),
                Tx {
                    net: &self.net,
                    buf: &mut self.tx,
                },
            )),
            Ok(None) => None,
            Err(e) => {
                log::debug!("mkernel stack: frame not received: {e}");
                None
            }
        }
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            net: &self.net,
            buf: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}
