<#
.SYNOPSIS
  Installs (or upgrades in place) the wardwatch agent on Windows Server from this offline
  bundle: a venv made with `py -3.11`, pip with --no-index on the bundle's wheels (every wheel
  checked against its sha256), a starter agent.yaml if none exists, the enrolment token, and
  the Windows service.

.EXAMPLE
  # in an elevated PowerShell, in the unpacked bundle
  .\install.ps1 -TokenFile C:\Temp\emr-app-01.token -CollectorUrl https://collector:9800

.NOTES
  Not run on the project's Linux test machine: this script is untested there. The service is
  registered with `wardwatch-agent service install` (deploy/windows, docs/deploy.md "Windows
  service"); when the installed agent has no such command the script says so and skips it.
  Re-running keeps agent.yaml, agent.token (unless a new token is given) and the state dir.
#>
[CmdletBinding()]
param(
  [string]$Prefix = "$env:ProgramFiles\wardwatch",
  [string]$ConfigDir = "$env:ProgramData\wardwatch",
  [string]$StateDir = "$env:ProgramData\wardwatch\state",
  [string]$Python = "",
  [string]$TokenFile = "",          # the one-time token; or set $env:WARDWATCH_TOKEN
  [string]$CollectorUrl = "",
  [string]$AgentId = "",
  [switch]$NoService
)
$ErrorActionPreference = "Stop"
$Bundle = $PSScriptRoot
function Say([string]$m) { Write-Host "install: $m" }

# --- the bundle is whole ---------------------------------------------------------------------
foreach ($line in Get-Content (Join-Path $Bundle "SHA256SUMS")) {
  $sum, $rel = $line -split "  ", 2
  $actual = (Get-FileHash -Algorithm SHA256 (Join-Path $Bundle $rel)).Hash.ToLower()
  if ($actual -ne $sum) { throw "bundle file $rel does not match SHA256SUMS: copy the archive again" }
}
Say "bundle verified against SHA256SUMS"

# --- Python 3.11 (the wheels are cp311) -------------------------------------------------------
if (-not $Python) {
  if (Get-Command py -ErrorAction SilentlyContinue) { $Python = (& py -3.11 -c "import sys; print(sys.executable)") }
}
if (-not $Python -or -not (Test-Path $Python)) {
  throw "CPython 3.11 not found: install python-3.11.x-amd64.exe (all users) from the media, or pass -Python"
}
& $Python -c "import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)"
if ($LASTEXITCODE -ne 0) { throw "$Python is not CPython 3.11" }

# --- venv, upgraded in place -----------------------------------------------------------------
$env:PIP_CONFIG_FILE = "NUL"
$env:PIP_DISABLE_PIP_VERSION_CHECK = "1"
$Venv = Join-Path $Prefix "venv"
$VenvPy = Join-Path $Venv "Scripts\python.exe"
if (-not (Test-Path $VenvPy)) {
  New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
  & $Python -m venv $Venv; if ($LASTEXITCODE -ne 0) { throw "venv creation failed" }
  Say "created the venv in $Venv"
}
& $VenvPy -m pip install -q --no-index --find-links (Join-Path $Bundle "wheels") --require-hashes --upgrade -r (Join-Path $Bundle "requirements.txt")
if ($LASTEXITCODE -ne 0) { throw "pip install from the bundle failed" }
$Wheel = Get-ChildItem (Join-Path $Bundle "wheels\wardwatch-*.whl") | Select-Object -First 1
& $VenvPy -m pip install -q --no-index --no-deps --force-reinstall $Wheel.FullName
if ($LASTEXITCODE -ne 0) { throw "pip install of $($Wheel.Name) failed" }
Copy-Item (Join-Path $Bundle "MANIFEST.json") (Join-Path $Prefix "bundle-manifest.json") -Force
Copy-Item (Join-Path $Bundle "uninstall.ps1") (Join-Path $Prefix "uninstall.ps1") -Force
$Agent = Join-Path $Venv "Scripts\wardwatch-agent.exe"

# --- config (never overwritten) and the token (never echoed) ---------------------------------
New-Item -ItemType Directory -Force -Path $ConfigDir, $StateDir | Out-Null
Copy-Item (Join-Path $Bundle "config\*.sample.yaml") $ConfigDir -Force
$Config = Join-Path $ConfigDir "agent.yaml"
$TokenPath = Join-Path $ConfigDir "agent.token"
if (Test-Path $Config) {
  Say "kept the existing $Config"
} else {
  $out = New-Object System.Collections.Generic.List[string]
  $section = ""; $keep = $true
  foreach ($line in Get-Content -Encoding UTF8 (Join-Path $Bundle "config\agent.sample.yaml")) {
    if ($line -match '^([a-z_]+):') { $section = $Matches[1]; $keep = $true }
    elseif ($section -eq "checks" -and $line -match '^  - id:\s*(\S+)') { $keep = ($Matches[1] -eq "host") }
    if (-not $keep) { continue }
    if ($section -eq "agent" -and $line -match '^  id:') {
      $line = if ($AgentId) { "  id: $AgentId" } else { "  # id: ...                       # unset: the host name" }
    } elseif ($section -eq "agent" -and $line -match '^  state_dir:') {
      $line = "  state_dir: '$StateDir'"
    }
    $out.Add($line)
    if ($line -eq "checks:") { $out.Add("  # more check kinds: agent.sample.yaml beside this file") }
  }
  if ($CollectorUrl) { $out.AddRange([string[]]@("", "collector:", "  url: $CollectorUrl", "  token_file: '$TokenPath'")) }
  [System.IO.File]::WriteAllLines($Config, $out, (New-Object System.Text.UTF8Encoding($false)))
  Say "wrote $Config from the sample (agent section and the host check)"
}
if ($TokenFile -or $env:WARDWATCH_TOKEN) {
  $token = if ($TokenFile) { (Get-Content -Raw $TokenFile).Trim() } else { $env:WARDWATCH_TOKEN.Trim() }
  Remove-Item Env:\WARDWATCH_TOKEN -ErrorAction SilentlyContinue
  if (-not $token) { throw "the enrolment token is empty" }
  [System.IO.File]::WriteAllText($TokenPath, "$token`n")
  # Administrators, SYSTEM (the service account) and no one else
  & icacls $TokenPath /inheritance:r /grant:r "*S-1-5-32-544:F" "*S-1-5-18:R" | Out-Null
  Say "stored the enrolment token in $TokenPath (Administrators and SYSTEM only)"
}

& $Agent validate --config $Config
if ($LASTEXITCODE -ne 0) { throw "$Config does not validate; fix it and run install.ps1 again" }

# --- the service -----------------------------------------------------------------------------
if ($NoService) { Say "service: skipped (-NoService)"; exit 0 }
& $Agent service --help *> $null
if ($LASTEXITCODE -ne 0) {
  Say "service: skipped: this wardwatch-agent has no 'service' command (see docs/deploy.md); run: $Agent run --config $Config"
  exit 0
}
& $Agent service stop *> $null                      # an upgrade: stop the old one first
& $Agent service install --config $Config
if ($LASTEXITCODE -ne 0) { throw "wardwatch-agent service install failed" }
& $Agent service start
if ($LASTEXITCODE -ne 0) { throw "wardwatch-agent service start failed" }
Say "service: installed and started"
