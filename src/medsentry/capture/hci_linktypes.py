"""Bluetooth HCI link types (tcpdump.org/linktypes.html) and btsnoop/PacketLogger pseudo ones.

Frames of these link types are left undecoded by the decode kernel and handed to the HCI
dissector (protocols/ble_hci.py).
"""

LINKTYPE_BLUETOOTH_HCI_H4 = 187  # H4 packet indicator byte + HCI packet
LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR = 201  # 4-byte big-endian direction first
LINKTYPE_BLUETOOTH_LINUX_MONITOR = 254  # adapter index, opcode (big-endian) + payload
# btsnoop records (capture/btsnoop.py): pseudo link type = the btsnoop datalink; the frame is
# the record from its flags field (flags, drops, timestamp, HCI packet)
LINKTYPE_BTSNOOP_H1 = 1001
LINKTYPE_BTSNOOP_H4 = 1002
LINKTYPE_BTSNOOP_MONITOR = 2001
# PacketLogger records (capture/pklg.py): the record from its packet type byte
LINKTYPE_PACKETLOGGER = 3001
HCI_LINKTYPES = (
    LINKTYPE_BLUETOOTH_HCI_H4,
    LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR,
    LINKTYPE_BLUETOOTH_LINUX_MONITOR,
    LINKTYPE_BTSNOOP_H1,
    LINKTYPE_BTSNOOP_H4,
    LINKTYPE_BTSNOOP_MONITOR,
    LINKTYPE_PACKETLOGGER,
)
