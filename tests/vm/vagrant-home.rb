# -*- mode: ruby -*-
# $VAGRANT_HOME/Vagrantfile of the VM test (run-vm-test copies it there).
#
# Vagrant merges this file into every project it runs, before the project's
# own Vagrantfile, so these settings describe the test machine and the
# project's Vagrantfile is tested unchanged.  Settings the project also makes
# (memory, cpus) are the project's: its Vagrantfile is read last and wins.

Vagrant.configure("2") do |config|
  # The box was built locally and added from a file: there is nothing to
  # check for updates, and Vagrant Cloud cannot be reached anyway.
  config.vm.box_check_update = false

  # No usable KVM on the test machine: QEMU emulates the CPU (TCG), and the
  # guest takes about a minute to boot instead of seconds.
  config.vm.boot_timeout = 900

  config.vm.provider "libvirt" do |lv|
    lv.driver = "qemu"
    lv.cpus = 2
    lv.memory = 2048
    # Libvirt's own NAT network, started by run-vm-test, rather than one more
    # network that vagrant-libvirt would create.  Keep: without it `vagrant
    # destroy` deletes the network's definition, which is libvirt's, not ours.
    lv.management_network_name = "default"
    lv.management_network_address = "192.168.122.0/24"
    lv.management_network_keep = true
    # The VM is thrown away after the test, so its disk need not survive a
    # crash of this machine: QEMU may ignore the guest's flushes (dpkg and
    # pip flush after every file, and each flush is slow under emulation).
    lv.disk_driver :cache => "unsafe"
    # Nobody looks at a screen here: no VNC server on this machine's ports.
    lv.graphics_type = "none"
  end

  # HTTPS from the test machine goes through an intercepting proxy whose CA
  # the guest must trust, as the host does, for pip to reach PyPI.  A
  # student's laptop has no such proxy: NSLAB_VM_CA_DIR is unset there.
  # These provisioners run before the project's, which comes later.
  ca_dir = ENV["NSLAB_VM_CA_DIR"]
  if ca_dir && !ca_dir.empty?
    certs = Dir.glob(File.join(ca_dir, "*.crt")).sort
    certs.each do |cert|
      config.vm.provision "test-ca #{File.basename(cert)}", type: "file",
        source: cert, destination: "/tmp/test-ca-#{File.basename(cert)}"
    end
    config.vm.provision "test-ca", type: "shell", inline: <<-SHELL
      set -e
      for f in /tmp/test-ca-*.crt; do
        install -m 644 "$f" "/usr/local/share/ca-certificates/${f#/tmp/test-ca-}"
        rm "$f"
      done
      update-ca-certificates >/dev/null
      # pip carries its own CA list; point it at the system's.
      printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf
      echo "test machine: trusting #{certs.length} extra CA certificate(s) for HTTPS"
    SHELL
  end
end
