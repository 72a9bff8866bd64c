"""Subcommands that build, serve and check the BentoML service."""

from __future__ import annotations

import argparse
import os
import sys

from pr2prod import paths
from pr2prod.commands import arg, command


@command("bento", "build the BentoML bento serving the pipeline's model")
def bento(_: argparse.Namespace) -> int:
    from pr2prod.release.bento import build_bento
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    settings, schema = load_settings(), load_schema(paths.SCHEMA)
    info = build_bento(settings, schema)
    model_state = "stored" if info.model_created else "already stored"
    bento_state = "built" if info.bento_created else "already built (nothing changed)"
    print(f"bento: model {info.model_tag} {model_state}; bento {info.bento_tag} {bento_state}")
    return 0


@command(
    "serve",
    "serve the built bento locally",
    arg("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
    arg("--port", type=int, default=3000),
)
def serve(args: argparse.Namespace) -> int:
    from pr2prod.release.bento import built_bento_tag

    tag = built_bento_tag()
    print(f"serve: {tag} on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    command_line = ["bentoml", "serve", tag, "--host", args.host, "--port", str(args.port)]
    os.execvp(command_line[0], command_line)  # the server replaces this process: signals go to it


@command(
    "image",
    "container image of the bento (or a Docker build context)",
    arg("--image", help="image name:tag (default: the bento tag)"),
)
def image(args: argparse.Namespace) -> int:
    from pr2prod.release.bento import built_bento_tag, expected_tags
    from pr2prod.release.image import (
        containerize,
        docker_available,
        image_labels,
        write_image_context,
    )

    tag = built_bento_tag()
    labels = image_labels(tag, expected_tags()[0])
    name = args.image or tag
    if docker_available():
        containerize(tag, name, labels)
        print(f"image: built {name}")
        return 0
    dockerfile = write_image_context(tag, paths.IMAGE_CONTEXT, labels)
    print(
        f"image: no Docker daemon here, so no image was built. Wrote a complete build context "
        f"(the bento, its model and {dockerfile.name}) to {paths.IMAGE_CONTEXT}/.\n"
        f"Build it where Docker runs: docker build -t {name} {paths.IMAGE_CONTEXT}"
    )
    return 0


@command(
    "smoke",
    "check a running service: ready, and golden rows as evaluated",
    arg("--url", default="http://127.0.0.1:3000", help="the service's base URL"),
    arg("--timeout", type=float, default=120, help="seconds to wait until it is ready"),
)
def smoke(args: argparse.Namespace) -> int:
    from pr2prod.release.smoke import smoke_test

    passed, summary = smoke_test(args.url, timeout=args.timeout)
    print(summary, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1
