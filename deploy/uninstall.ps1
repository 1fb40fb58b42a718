<#
.SYNOPSIS
  Removes the wardwatch agent service and venv; keeps agent.yaml, agent.token and the state
  dir unless -Purge is given. Not run on the project's Linux test machine (untested there).
#>
[CmdletBinding()]
param(
  [string]$Prefix = "$env:ProgramFiles\wardwatch",
  [string]$ConfigDir = "$env:ProgramData\wardwatch",
  [string]$StateDir = "$env:ProgramData\wardwatch\state",
  [switch]$Purge
)
$ErrorActionPreference = "Stop"
function Say([string]$m) { Write-Host "uninstall: $m" }

if (-not (Test-Path (Join-Path $Prefix "bundle-manifest.json"))) {
  throw "$Prefix is not a wardwatch installation (no bundle-manifest.json)"
}
$Agent = Join-Path $Prefix "venv\Scripts\wardwatch-agent.exe"
if (Test-Path $Agent) {
  & $Agent service --help *> $null
  if ($LASTEXITCODE -eq 0) {
    & $Agent service stop *> $null
    & $Agent service remove
    Say "removed the Windows service"
  }
}
Remove-Item -Recurse -Force (Join-Path $Prefix "venv"), (Join-Path $Prefix "bundle-manifest.json")
Remove-Item -Force (Join-Path $Prefix "uninstall.ps1") -ErrorAction SilentlyContinue
Remove-Item $Prefix -ErrorAction SilentlyContinue
Say "removed the venv in $Prefix"
if (-not $Purge) { Say "kept $ConfigDir and $StateDir (-Purge removes them)"; exit 0 }
Remove-Item -Recurse -Force (Join-Path $StateDir "spool") -ErrorAction SilentlyContinue
Remove-Item $StateDir -ErrorAction SilentlyContinue
foreach ($f in "agent.yaml", "agent.token", "agent.sample.yaml", "collector.sample.yaml") {
  Remove-Item -Force (Join-Path $ConfigDir $f) -ErrorAction SilentlyContinue
}
Remove-Item $ConfigDir -ErrorAction SilentlyContinue
Say "purged the agent's config and state"
