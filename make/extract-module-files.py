"""Copy files out of a Go module zip that `go mod download -json` fetched (and verified).

    extract-module-files.py DOWNLOAD_JSON OUT_DIR PATH_IN_MODULE...

Each file lands in OUT_DIR under its base name. Fails naming what is missing.
"""
import json
import os
import sys
import zipfile

download_json, out_dir, *wanted = sys.argv[1:]
with open(download_json) as f:
    info = json.load(f)
archive = info.get("Zip")
if not archive or not os.path.exists(archive):
    sys.exit(f"{info.get('Path')}@{info.get('Version')}: no module zip ({info.get('Error', 'go mod download failed')})")
prefix = f"{info['Path']}@{info['Version']}/"
with zipfile.ZipFile(archive) as z:
    for path in wanted:
        try:
            data = z.read(prefix + path)
        except KeyError:
            sys.exit(f"{prefix}{path}: not in {archive}")
        with open(os.path.join(out_dir, os.path.basename(path)), "wb") as out:
            out.write(data)
