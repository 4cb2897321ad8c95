"""Maps the design card's top-level folders onto one namespaced import package, `maskline.*`.

`shared/` is imported as `maskline.shared`, `contracts/` as `maskline.contracts`, and so on, so no
bare `shared` or `contracts` module lands on sys.path.
"""

from setuptools import find_packages, setup

FOLDERS = ("shared", "contracts", "services", "infra", "models")

packages = ["maskline"]
package_dir = {"maskline": "maskline"}
for folder in FOLDERS:
    name = f"maskline.{folder}"
    packages.append(name)
    package_dir[name] = folder
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"": ["*.json", "*.pt", "*.png", "*.pbtxt", "*.conf", "*.html"]},
)
