"""Read back what wandb logged in offline mode: run-*.wandb is a LevelDB-style log (7-byte file
header, 32 KiB blocks, records with a 7-byte header: crc32, length, type) of wandb Record protos."""
import json
import struct

BLOCK, HEADER = 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

def records(path):
    from wandb.proto import wandb_internal_pb2
    data = open(path, 'rb').read()
    pos, buf = HEADER, b''
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:          # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack('<IHB', data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        buf = chunk if kind in (FULL, FIRST) else buf + chunk
        if kind in (FULL, LAST):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            yield rec

def history(path):
    """[{key: value}] of every history row."""
    rows = []
    for rec in records(path):
        if rec.WhichOneof('record_type') == 'history':
            rows.append({item.key or '/'.join(item.nested_key): json.loads(item.value_json) for item in rec.history.item})
    return rows

def run_name(path):
    """The run's display name (its run record)."""
    for rec in records(path):
        if rec.WhichOneof('record_type') == 'run':
            return rec.run.display_name
    return None
