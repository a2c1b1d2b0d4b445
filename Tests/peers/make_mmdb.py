"""A small MaxMind DB fixture for the GeoIP tests, and MaxMind's own reader to check against.

    make_mmdb.py write PATH [--ip-version 4|6] [--record-size 24|28|32]
    make_mmdb.py lookup PATH IP...   # one JSON line per IP: {"country": ..., "region": ...}

The file is written with mmdb-writer; lookup reads it with the maxminddb package and applies the
rule Easel uses (country.iso_code, else registered_country.iso_code; the first subdivision's
iso_code, else its English name).
"""

import argparse
import json
import sys

import maxminddb
from mmdb_writer import MMDBWriter, TreeWriter
from netaddr import IPSet


def subdivision(iso_code=None, name=None):
    entry = {"geoname_id": 1000}
    if iso_code:
        entry["iso_code"] = iso_code
    if name:
        entry["names"] = {"de": name + " (de)", "en": name}
    return entry


def country(iso_code):
    return {"geoname_id": 2000, "iso_code": iso_code, "names": {"en": iso_code + " land"}}


# City-style records: other fields come before and after the ones Easel reads, so the reader
# has to skip maps, arrays, doubles and integers to find them.
NETWORKS = [
    (["203.0.113.0/24"], {
        "city": {"names": {"en": "Munich", "de": "München"}},
        "continent": {"code": "EU"},
        "country": country("DE"),
        "location": {"latitude": 48.1374, "longitude": 11.5755, "accuracy_radius": 20},
        "registered_country": country("DE"),
        "subdivisions": [subdivision("BY", "Bavaria"), subdivision("09", "Upper Bavaria")],
    }),
    # No country of its own: the registered country stands in.
    (["198.51.100.0/24"], {"registered_country": country("FR")}),
    # A subdivision with a name but no code.
    (["192.0.2.0/25"], {"country": country("US"), "subdivisions": [subdivision(name="Oregon")]}),
    # A more specific network inside a larger one.
    (["10.0.0.0/8"], {"country": country("NL")}),
    (["10.1.0.0/16"], {"country": country("BE"), "subdivisions": [subdivision("VLG", "Flanders")]}),
    # Loopback, so a test over a real connection from 127.0.0.1 finds a country.
    (["127.0.0.0/8", "::1/128"], {"country": country("AQ")}),
    (["2001:db8:1::/48"], {"country": country("JP"), "subdivisions": [subdivision("13", "Tokyo")]}),
    (["2001:db8:2::/48"], {"country": country("CH")}),
]


def write(path, ip_version, record_size):
    writer = MMDBWriter(ip_version=ip_version, ipv4_compatible=ip_version == 6, database_type="Easel-Test-City",
                        languages=["de", "en"], description="Easel GeoIP test fixture")
    for networks, record in NETWORKS:
        if ip_version == 4:
            networks = [n for n in networks if ":" not in n]
        writer.insert_network(IPSet(networks), record)

    class FixedRecordSize(TreeWriter):
        """mmdb-writer picks the smallest record size; the tests want all three."""

        def _adjust_record_size(self):
            super()._adjust_record_size()
            if record_size:
                self.record_size = record_size

    FixedRecordSize(writer.tree, writer._build_meta(), writer.int_type, writer.float_type).write(path)


def lookup(path, addresses):
    with maxminddb.open_database(path) as reader:
        for address in addresses:
            record = reader.get(address) or {}
            code = (record.get("country") or {}).get("iso_code") or (record.get("registered_country") or {}).get("iso_code")
            first = (record.get("subdivisions") or [{}])[0]
            region = first.get("iso_code") or (first.get("names") or {}).get("en")
            print(json.dumps({"ip": address, "country": code, "region": region}))


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    write_command = commands.add_parser("write")
    write_command.add_argument("path")
    write_command.add_argument("--ip-version", type=int, choices=[4, 6], default=6)
    write_command.add_argument("--record-size", type=int, choices=[24, 28, 32])
    lookup_command = commands.add_parser("lookup")
    lookup_command.add_argument("path")
    lookup_command.add_argument("addresses", nargs="+")
    arguments = parser.parse_args()
    if arguments.command == "write":
        write(arguments.path, arguments.ip_version, arguments.record_size)
    else:
        lookup(arguments.path, arguments.addresses)


if __name__ == "__main__":
    sys.exit(main())
