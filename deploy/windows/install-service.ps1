<#
  Registers wardwatch-agent as a Windows service (run as Administrator).
  Assumes wardwatch[windows] is installed in $Venv (the offline bundle's install.ps1 does that).
  Idempotent: an existing service is stopped, re-registered with the same config, started.
  docs/deploy.md, "Windows service".
#>
param(
  [string]$Venv = "$env:ProgramFiles\wardwatch\venv",
  [string]$Config = "$env:ProgramData\wardwatch\agent.yaml",
  [ValidateSet("auto", "delayed", "manual")] [string]$Startup = "delayed"
)
$ErrorActionPreference = "Stop"
$agent = Join-Path $Venv "Scripts\wardwatch-agent.exe"
$data = Join-Path $env:ProgramData "wardwatch"
New-Item -ItemType Directory -Force -Path $data, (Join-Path $data "logs"), (Join-Path $data "state") | Out-Null
# config, token and spool: Administrators and SYSTEM only (the service runs as LocalSystem)
icacls $data /inheritance:r /grant:r "*S-1-5-32-544:(OI)(CI)F" "*S-1-5-18:(OI)(CI)F" | Out-Null
if (-not (Test-Path $Config)) {
  Copy-Item (Join-Path $PSScriptRoot "agent.windows.yaml") $Config
  Write-Host "wrote $Config from the sample: edit it, then run this script again"
  exit 1
}
& $agent validate --config $Config
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
if (Get-Service wardwatch-agent -ErrorAction SilentlyContinue) {
  & $agent service uninstall
}
& $agent service install --config $Config --startup $Startup
& $agent service start
# restart on failure: 5 s, 30 s, then every 60 s; the failure count resets after a day
sc.exe failure wardwatch-agent reset= 86400 actions= restart/5000/restart/30000/restart/60000 | Out-Null
